"""Where stages and their chunks run: in this process, in a local process pool, or on Ray.

Stages never import this package's executors; they call :meth:`pipeline.stage.StageContext.map`,
which hands the work to whichever executor the engine was given. See :func:`make_executor`.
"""

from pipeline.executors.base import Executor, InlineExecutor, Resources
from pipeline.executors.config import ExecutorParams, make_executor

__all__ = ["Executor", "ExecutorParams", "InlineExecutor", "Resources", "make_executor"]
