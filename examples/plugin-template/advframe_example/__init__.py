"""advframe-example-plugin: an example third-party plugin for advframe.

Components: the ``example_r_fgsm`` attack, the synthetic ``example_stripes`` data set
and the ``example_mlp`` model, registered by :mod:`advframe_example.plugin`.
"""

__version__ = "0.1.0"
