"""Building reward-model examples from recorded episodes and training reward models on them.

- `dataset`: the examples of the three modalities from episode stores (the split by episode);
- `lerobot_source`: LeRobotDatasets on disk as a source of those examples;
- `lite_train`, `lite_runs`: the compact model (`lrm.backends.lite`), from labels or a teacher;
- `lora_data`, `lora_train`: Qwen3-VL LoRA adapters with TRL, in the qwen3vl backend's format.
"""
