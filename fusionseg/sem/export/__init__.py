"""SEM result files: mineralogy tables, mean spectra (.hspy), the field report and the predict writer."""
