"""Language-model experiments: the monosemanticity of standard and harmonic GPTs."""
