#!/bin/sh
# Regenerate the protobuf Python code (*_pb2.py, *_pb2.pyi) from the .proto files in this folder.
#
# Run from anywhere:  sh workers/events/regenerate.sh   (needs the dev extra: grpcio-tools)
#
# The include root is workers/, so the files register in the descriptor pool as events/core.proto
# and so on, the names the platform's schema uses. protoc then writes imports between our modules
# as "from events import x_pb2"; the sed below rewrites them to "from workers.events import x_pb2"
# so they resolve inside the package (today no file imports another, but a future one may).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
cd "$root"
"$python" -m grpc_tools.protoc -I workers --python_out=workers --pyi_out=workers \
    workers/events/core.proto workers/events/notification.proto workers/events/mention_notification.proto \
    workers/events/status.proto
for f in workers/events/*_pb2.py workers/events/*_pb2.pyi; do
    sed -i -e 's/^from events import /from workers.events import /' -e 's/^import events\./import workers.events./' "$f"
done
"$python" -m grpc_tools.protoc --version
