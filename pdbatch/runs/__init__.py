"""A run's drivers and handle: ``handle`` (``BatchRun``, ``RunStatus``), ``local`` (the pandas
driver), ``dask`` (the Dask driver), ``jobs`` (the stages both share) and ``manifest``.

``pdbatch.runs`` itself is the function that lists recorded runs (``pdbatch.recorded.runs``); this
package is imported by its submodules' names."""
