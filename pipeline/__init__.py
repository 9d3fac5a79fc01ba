"""posecap engine and shared library: DAG runner, artifact I/O, config, geometry, pose model."""

__version__ = "0.1.0"
