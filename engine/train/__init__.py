"""Multi-process training: DeepSpeed ZeRO configs and launching the finetune loop over several processes."""
