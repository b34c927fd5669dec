"""Pipeline stages: small classes with one job over Arrow tables (see ``curate.stages.base``)."""
