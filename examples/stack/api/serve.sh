#!/bin/sh
# Writes a status page naming the database host, then serves it on port 8000 (stops at once on SIGTERM).
echo "{\"status\": \"ok\", \"db\": \"${DB_HOST:-unset}\"}" > /app/www/status.json
exec httpd -f -p 8000 -h /app/www
