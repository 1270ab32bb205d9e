"""embodied: MuJoCo benchmarks, skills, LLM planners and the evaluation harness (EmbodiedGPT)."""
