"""Learning-rate schedules: small immutable, serialisable callables ``step -> lr``.

``step`` is the number of completed updates (0 on the first step), as in
Keras, optax and MLX.  Every schedule is a frozen dataclass: its fields are its
``get_config()`` and :func:`from_config` rebuilds it, so schedules travel
inside ``state_dict()`` and checkpoints.

Name mapping (ours = theirs):

====================  ==========================================  ==================================  ===========================
numba_adam            Keras (keras.optimizers.schedules)          optax                               MLX (mlx.optimizers)
====================  ==========================================  ==================================  ===========================
constant(lr)          a float                                     constant_schedule(value)            a float
exponential_decay     ExponentialDecay(initial_learning_rate,     exponential_decay(init_value,       exponential_decay(init,
 (initial_lr,          decay_steps, decay_rate, staircase)         transition_steps, decay_rate,       decay_rate) = ours with
 decay_steps,                                                      staircase=staircase)                decay_steps=1
 decay_rate,
 staircase)
inverse_time_decay    InverseTimeDecay(initial_learning_rate,     --                                  --
 (same arguments)      decay_steps, decay_rate, staircase)
step_decay            --  (torch StepLR(step_size, gamma))        --                                  step_decay(init,
 (initial_lr,                                                                                          decay_rate, step_size)
 step_size, gamma)
piecewise_constant    PiecewiseConstantDecay(boundaries, values)  piecewise_constant_schedule:        --
 (boundaries,                                                      values are products of scales,
 values)                                                           and a boundary b switches at
                                                                   step b, where Keras (and we)
                                                                   switch after b
polynomial_decay      PolynomialDecay(initial_learning_rate,      polynomial_schedule(init_value,     --
 (initial_lr,          decay_steps, end_learning_rate, power,      end_value, power,
 decay_steps,          cycle)                                      transition_steps)
 end_lr, power,
 cycle)
cosine_decay          CosineDecay(initial_learning_rate,          cosine_decay_schedule(init_value,   cosine_decay(init,
 (initial_lr,          decay_steps, alpha)                         decay_steps, alpha)                 decay_steps, end) =
 decay_steps,                                                                                          ours with end_lr=end
 alpha | end_lr)
linear_warmup         --                                          linear_schedule(init_value,         linear_schedule(init,
 (initial_lr,                                                      end_value, transition_steps)        end, steps)
 end_lr, steps);
 alias linear_schedule
warmup_cosine_decay   CosineDecay(0-based ... warmup_target,      warmup_cosine_decay_schedule(       --
 (initial_lr,          warmup_steps) is the same shape with        init_value, peak_value,
 peak_lr,              decay_steps counted after warm-up           warmup_steps, decay_steps,
 warmup_steps,                                                     end_value)
 decay_steps,
 end_lr)
join(schedules,       --                                          join_schedules(schedules,           join_schedules(schedules,
 boundaries)                                                       boundaries)                         boundaries)
====================  ==========================================  ==================================  ===========================

Example:
    >>> from numba_adam import schedules
    >>> s = schedules.warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110)
    >>> [round(s(t), 3) for t in (0, 5, 10, 60, 110, 500)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    >>> schedules.from_config(s.get_config()) == s
    True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

from . import _checks

__all__ = [
    "Schedule", "constant", "exponential_decay", "inverse_time_decay", "step_decay",
    "piecewise_constant", "polynomial_decay", "cosine_decay", "linear_warmup",
    "linear_schedule", "warmup_cosine_decay", "join", "from_config",
]

_REGISTRY: dict[str, type["Schedule"]] = {}

# Compiled form: every schedule is a list of segments, each a leaf formula from a start
# step on.  A segment row is (start, offset, kind, a, b, c, d, e); kinds:
KIND_CONSTANT, KIND_EXPONENTIAL, KIND_INVERSE_TIME, KIND_STEP, KIND_POLYNOMIAL, \
    KIND_COSINE, KIND_LINEAR = range(7)
SEGMENT_COLUMNS = 8


def _number(name: str, value: Any, minimum: float | None = None, positive: bool = False) -> float:
    return _checks.real(name, value, low=minimum, positive=positive)


def _steps(name: str, value: Any, positive: bool = True) -> int:
    return _checks.integer(name, value, low=1 if positive else 0,
                           what="an integer number of steps")


def _step_arg(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"a schedule's step must be a non-negative integer, got {step!r}")
    return int(step)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Base of all schedules: ``__call__(step) -> float`` plus config round trip."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __call__(self, step: int) -> float:
        return float(self.value(_step_arg(step)))

    def value(self, step: int) -> float:
        raise NotImplementedError

    # The compiled form, for ``numba_adam.jit``: segment rows (see ``SEGMENT_COLUMNS``).
    kind: ClassVar[int] = -1

    def segment_params(self) -> tuple[float, ...]:
        """This schedule's numbers in the order its compiled ``kind`` reads them."""
        raise NotImplementedError

    def segments(self) -> list[tuple[float, ...]]:
        """The schedule as segment rows ``(start, offset, kind, a, b, c, d, e)``: from step
        ``start`` on (until the next row's start) the value is leaf ``kind`` with
        parameters ``a..e`` at ``step - offset``.  ``numba_adam.jit`` evaluates them in
        compiled code with the same arithmetic as :meth:`value`."""
        params = tuple(float(x) for x in self.segment_params())
        return [(0.0, 0.0, float(self.kind)) + params + (0.0,) * (5 - len(params))]

    def get_config(self) -> dict[str, Any]:
        """Plain data (JSON-compatible) that :func:`from_config` turns back into this schedule."""
        config: dict[str, Any] = {"name": self.name}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "schedules":
                value = [s.get_config() for s in value]
            elif isinstance(value, tuple):
                value = list(value)
            config[field.name] = value
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Schedule":
        return from_config(config)


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``get_config()`` output (validated like the constructor)."""
    if not isinstance(config, dict) or config.get("name") not in _REGISTRY:
        known = sorted(_REGISTRY)
        raise ValueError(f"not a schedule config (its 'name' must be one of {known}): {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    cls = _REGISTRY[config["name"]]
    if cls is Join:
        kwargs["schedules"] = [from_config(c) for c in kwargs.get("schedules", [])]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        if "argument" in str(exc):
            raise ValueError(f"bad {config['name']} config {config!r}: {exc}") from None
        raise


@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    lr: float
    name: ClassVar[str] = "constant"
    kind: ClassVar[int] = KIND_CONSTANT

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _number("lr", self.lr, minimum=0.0))

    def value(self, step: int) -> float:
        return self.lr

    def segment_params(self) -> tuple[float, ...]:
        return (self.lr,)


@dataclasses.dataclass(frozen=True)
class ExponentialDecay(Schedule):
    initial_lr: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False
    name: ClassVar[str] = "exponential_decay"
    kind: ClassVar[int] = KIND_EXPONENTIAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps))
        object.__setattr__(self, "decay_rate", _number("decay_rate", self.decay_rate, positive=True))
        object.__setattr__(self, "staircase", bool(self.staircase))

    def value(self, step: int) -> float:
        p = step / self.decay_steps
        return self.initial_lr * self.decay_rate ** (math.floor(p) if self.staircase else p)

    def segment_params(self) -> tuple[float, ...]:
        return self.initial_lr, self.decay_steps, self.decay_rate, self.staircase


@dataclasses.dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    initial_lr: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False
    name: ClassVar[str] = "inverse_time_decay"
    kind: ClassVar[int] = KIND_INVERSE_TIME

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps))
        object.__setattr__(self, "decay_rate", _number("decay_rate", self.decay_rate, 0.0))
        object.__setattr__(self, "staircase", bool(self.staircase))

    def value(self, step: int) -> float:
        p = step / self.decay_steps
        return self.initial_lr / (1.0 + self.decay_rate * (math.floor(p) if self.staircase else p))

    def segment_params(self) -> tuple[float, ...]:
        return self.initial_lr, self.decay_steps, self.decay_rate, self.staircase


@dataclasses.dataclass(frozen=True)
class StepDecay(Schedule):
    initial_lr: float
    step_size: int
    gamma: float
    name: ClassVar[str] = "step_decay"
    kind: ClassVar[int] = KIND_STEP

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "step_size", _steps("step_size", self.step_size))
        object.__setattr__(self, "gamma", _number("gamma", self.gamma, 0.0))

    def value(self, step: int) -> float:
        return self.initial_lr * self.gamma ** (step // self.step_size)

    def segment_params(self) -> tuple[float, ...]:
        return (self.initial_lr, self.step_size, self.gamma)


@dataclasses.dataclass(frozen=True)
class PiecewiseConstant(Schedule):
    boundaries: tuple
    values: tuple
    name: ClassVar[str] = "piecewise_constant"

    def __post_init__(self) -> None:
        boundaries = tuple(_steps(f"boundaries[{i}]", b, positive=False)
                           for i, b in enumerate(self.boundaries))
        values = tuple(_number(f"values[{i}]", v, 0.0) for i, v in enumerate(self.values))
        if not boundaries:
            raise ValueError("piecewise_constant needs at least one boundary")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase strictly, got {list(boundaries)}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"piecewise_constant needs len(values) == len(boundaries) + 1, got "
                             f"{len(values)} values for {len(boundaries)} boundaries")
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", values)

    def segments(self) -> list[tuple[float, ...]]:
        # values[i] while step <= boundaries[i]: from step boundaries[i-1] + 1 on
        starts = [0] + [b + 1 for b in self.boundaries]
        return [(float(start), 0.0, float(KIND_CONSTANT), float(v), 0.0, 0.0, 0.0, 0.0)
                for start, v in zip(starts, self.values)]

    def value(self, step: int) -> float:
        # Keras: values[i] while step <= boundaries[i]
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


@dataclasses.dataclass(frozen=True)
class PolynomialDecay(Schedule):
    initial_lr: float
    decay_steps: int
    end_lr: float = 0.0001
    power: float = 1.0
    cycle: bool = False
    name: ClassVar[str] = "polynomial_decay"
    kind: ClassVar[int] = KIND_POLYNOMIAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps))
        object.__setattr__(self, "end_lr", _number("end_lr", self.end_lr, 0.0))
        object.__setattr__(self, "power", _number("power", self.power, positive=True))
        object.__setattr__(self, "cycle", bool(self.cycle))

    def value(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:   # Keras: stretch the period to the next multiple (1 at step 0)
            decay_steps = decay_steps * max(1, math.ceil(step / decay_steps))
        else:
            step = min(step, decay_steps)
        frac = 1.0 - step / decay_steps
        return (self.initial_lr - self.end_lr) * frac ** self.power + self.end_lr

    def segment_params(self) -> tuple[float, ...]:
        return self.initial_lr, self.decay_steps, self.end_lr, self.power, self.cycle


@dataclasses.dataclass(frozen=True)
class CosineDecay(Schedule):
    initial_lr: float
    decay_steps: int
    alpha: float = 0.0
    name: ClassVar[str] = "cosine_decay"
    kind: ClassVar[int] = KIND_COSINE

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps))
        object.__setattr__(self, "alpha", _number("alpha", self.alpha, 0.0))

    def value(self, step: int) -> float:
        step = min(step, self.decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return self.initial_lr * ((1.0 - self.alpha) * cosine + self.alpha)

    def segment_params(self) -> tuple[float, ...]:
        return (self.initial_lr, self.decay_steps, self.alpha)


@dataclasses.dataclass(frozen=True)
class LinearWarmup(Schedule):
    initial_lr: float
    end_lr: float
    steps: int
    name: ClassVar[str] = "linear_warmup"
    kind: ClassVar[int] = KIND_LINEAR

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_lr", _number("initial_lr", self.initial_lr, 0.0))
        object.__setattr__(self, "end_lr", _number("end_lr", self.end_lr, 0.0))
        object.__setattr__(self, "steps", _steps("steps", self.steps))

    def value(self, step: int) -> float:
        frac = min(step, self.steps) / self.steps
        return self.initial_lr + (self.end_lr - self.initial_lr) * frac

    def segment_params(self) -> tuple[float, ...]:
        return (self.initial_lr, self.end_lr, self.steps)


@dataclasses.dataclass(frozen=True)
class Join(Schedule):
    schedules: tuple
    boundaries: tuple
    name: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        schedules = tuple(self.schedules)
        for i, s in enumerate(schedules):
            if not isinstance(s, Schedule):
                raise TypeError(f"join's schedules[{i}] must be a numba_adam schedule, got {s!r}")
        boundaries = tuple(_steps(f"boundaries[{i}]", b, positive=False)
                           for i, b in enumerate(self.boundaries))
        if len(schedules) != len(boundaries) + 1:
            raise ValueError(f"join needs one more schedule than boundaries, got "
                             f"{len(schedules)} schedules and {len(boundaries)} boundaries")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase strictly, got {list(boundaries)}")
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "boundaries", boundaries)

    def segments(self) -> list[tuple[float, ...]]:
        # schedule i runs from boundaries[i-1] (at step - boundaries[i-1]) up to boundaries[i]
        starts = (0,) + self.boundaries
        ends = self.boundaries + (math.inf,)
        rows = []
        for schedule, start, end in zip(self.schedules, starts, ends):
            rows.extend((start + row[0], start + row[1]) + tuple(row[2:])
                        for row in schedule.segments() if start + row[0] < end)
        return [tuple(float(x) for x in row) for row in rows]

    def value(self, step: int) -> float:
        # optax/MLX: from boundary b on, the next schedule runs at step - b.
        offset, index = 0, 0
        for i, boundary in enumerate(self.boundaries):
            if step >= boundary:
                offset, index = boundary, i + 1
        return self.schedules[index](step - offset)


def constant(lr: float) -> Schedule:
    """The same learning rate at every step."""
    return Constant(lr)


def exponential_decay(initial_lr: float, decay_steps: int, decay_rate: float,
                      staircase: bool = False) -> Schedule:
    """``initial_lr * decay_rate ** (step / decay_steps)`` (the exponent floored if staircase)."""
    return ExponentialDecay(initial_lr, decay_steps, decay_rate, staircase)


def inverse_time_decay(initial_lr: float, decay_steps: int, decay_rate: float,
                       staircase: bool = False) -> Schedule:
    """``initial_lr / (1 + decay_rate * step / decay_steps)`` (the ratio floored if staircase)."""
    return InverseTimeDecay(initial_lr, decay_steps, decay_rate, staircase)


def step_decay(initial_lr: float, step_size: int, gamma: float) -> Schedule:
    """``initial_lr * gamma ** (step // step_size)``."""
    return StepDecay(initial_lr, step_size, gamma)


def piecewise_constant(boundaries: list[int], values: list[float]) -> Schedule:
    """``values[0]`` while step <= boundaries[0], ``values[i]`` while step <= boundaries[i], then the last."""
    return PiecewiseConstant(tuple(boundaries), tuple(values))


def polynomial_decay(initial_lr: float, decay_steps: int, end_lr: float = 0.0001,
                     power: float = 1.0, cycle: bool = False) -> Schedule:
    """``(initial_lr - end_lr) * (1 - step / decay_steps) ** power + end_lr`` (Keras PolynomialDecay)."""
    return PolynomialDecay(initial_lr, decay_steps, end_lr, power, cycle)


def cosine_decay(initial_lr: float, decay_steps: int, alpha: float = 0.0,
                 end_lr: float | None = None) -> Schedule:
    """Half a cosine from ``initial_lr`` down to ``alpha * initial_lr`` (or ``end_lr``) at decay_steps."""
    if end_lr is not None:
        if alpha:
            raise ValueError("give cosine_decay either alpha or end_lr, not both")
        initial = _number("initial_lr", initial_lr, 0.0)
        end = _number("end_lr", end_lr, 0.0)
        if initial == 0.0 and end != 0.0:
            raise ValueError("cosine_decay from initial_lr 0 cannot end at a non-zero end_lr")
        alpha = end / initial if initial else 0.0
    return CosineDecay(initial_lr, decay_steps, alpha)


def linear_warmup(initial_lr: float, end_lr: float, steps: int) -> Schedule:
    """From ``initial_lr`` to ``end_lr`` linearly over ``steps``, then ``end_lr``."""
    return LinearWarmup(initial_lr, end_lr, steps)


linear_schedule = linear_warmup


def join(schedules: list[Schedule], boundaries: list[int]) -> Schedule:
    """``schedules[i]`` from ``boundaries[i-1]`` on, evaluated at ``step - boundaries[i-1]``."""
    return Join(tuple(schedules), tuple(boundaries))


def warmup_cosine_decay(initial_lr: float, peak_lr: float, warmup_steps: int,
                        decay_steps: int, end_lr: float = 0.0) -> Schedule:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to ``end_lr``
    at ``decay_steps`` (counted from step 0, warm-up included, as optax does)."""
    warmup_steps = _steps("warmup_steps", warmup_steps)
    decay_steps = _steps("decay_steps", decay_steps)
    if decay_steps <= warmup_steps:
        raise ValueError(f"decay_steps ({decay_steps}) must exceed warmup_steps ({warmup_steps})")
    return join([linear_warmup(initial_lr, peak_lr, warmup_steps),
                 cosine_decay(peak_lr, decay_steps - warmup_steps, end_lr=end_lr)],
                [warmup_steps])
