"""The systems the papers analyse: data models, small networks, closed-form theory.

Pure functions and small ``nn.Module``s: no file I/O, no plotting, no CLI.
"""
