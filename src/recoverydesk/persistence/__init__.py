"""SQLAlchemy 2 storage: tables, repositories, the unit of work, the jobs table and migrations."""
