"""Import-system glue: the meta-path finder, loaders, resources, metadata and
``extend_package``."""
