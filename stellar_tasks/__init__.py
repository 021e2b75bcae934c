"""The paper's tasks on top of a loaded model: evaluation, baselines, generation, inpainting, loci, extinction.

Kept out of ``modeling_stellar`` (which travels to the Hub as remote code and must stay portable).
"""
