"""Result files of any domain: phase-map TIFF, overlay and uncertainty PNGs, modal CSV, .hspy phase maps, atomic
writes, logger pictures. SEM reports, QC and mineralogy tables live in `fusionseg.sem.export`."""
