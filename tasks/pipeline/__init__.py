"""The engine under every recipe: the stage contract, the shard runner, the run, its
parameters, the one door to the LLM for stages, and publishing."""
