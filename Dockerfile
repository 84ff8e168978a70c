# im-server image. The cloud stacks build it themselves (stacks/image.py, from the context
# stacks/build_context.py assembles); to publish your own: `docker build -t <registry>/im-server:<version> .`
# and deploy with `--set image=<registry>/im-server@sha256:...`.
#
# Build stage: install this repository (`pip install .`) into a virtualenv, so the runtime stage
# gets the package and its dependencies without pip, compilers or the source tree.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install .

# Runtime stage: the virtualenv and a non-root user, nothing else.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Same uid as the Deployment's runAsUser (stacks/workload/server.py SERVER_UID).
RUN groupadd --system --gid 10001 im \
    && useradd --system --uid 10001 --gid im --no-create-home --shell /usr/sbin/nologin im
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
# slim has no curl; the standard library can ask /healthz (alive, not "ready").
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["im-server"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
