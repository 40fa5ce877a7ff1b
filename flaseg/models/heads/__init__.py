"""Segmentation heads. Each takes the backbone's {'c2'..'c5'} dict and returns a dict of
logits at feature resolution: 'out' (the prediction) plus auxiliary outputs."""
