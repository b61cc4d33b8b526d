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
COPY operations operations
COPY sandbox sandbox
COPY contracts contracts
COPY worker.py ./
RUN pip install --no-cache-dir .
# bytecode in the image: the workflow sandbox imports a workflow's modules again for every new
# workflow instance, and without .pyc files (PYTHONDONTWRITEBYTECODE) it compiled them each time
RUN python -m compileall -q /app
RUN useradd --system settle
USER settle
EXPOSE 8000 9464
CMD ["python", "-m", "api"]
