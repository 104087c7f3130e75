"""Scale-out tests: several processes or servers sharing PostgreSQL and Redis."""
