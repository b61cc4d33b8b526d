# One image for the API and the worker (the command differs). Used by docker-compose.temporal.yml.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY domain domain
COPY workflows workflows
COPY activities activities
COPY providers providers
COPY api api
COPY store store
COPY runtime runtime
COPY sandbox sandbox
COPY contracts contracts
COPY worker.py ./
RUN pip install --no-cache-dir .
RUN useradd --system settle
USER settle
EXPOSE 8000 9464
CMD ["python", "-m", "api"]
