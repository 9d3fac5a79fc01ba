"""Video I/O shared by the stages: streaming frame readers, atomic stream writers, tile geometry."""
