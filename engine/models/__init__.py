"""Model loading for every stage: HF folders, GGUF files and the bundled default model."""
