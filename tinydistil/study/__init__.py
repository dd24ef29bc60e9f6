"""The reproduction study around the method: the pipeline `reproduce` runs, the Table 4 ablation, the tables,
the report and the poster. Imported by the CLI (and notebooks); nothing in the method, eval/ or deploy/ imports it."""
