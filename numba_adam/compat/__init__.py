"""Framework-flavoured front-ends (Keras, legacy Keras, MLX) over the same engine."""
