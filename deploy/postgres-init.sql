-- Settle's own database next to Temporal's, on the compose file's PostgreSQL.
CREATE USER settle WITH PASSWORD 'settle';
CREATE DATABASE settle OWNER settle;
