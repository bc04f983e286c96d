"""The model a run trains: the base (tiny, random or pretrained), the backends that load it and add LoRA, the
precision of its frozen weights, memory estimates, and the patches of third-party code they need."""
