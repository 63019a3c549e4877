"""One folder per recipe: its parameters, plan and examples (recipe.py), its stages
(stages.py) and what reads its inputs (inputs.py). Each recipe's DAG is flows/<recipe>.py."""
