#!/bin/sh
# Stands in for gitlab-ci-local's wait image (sumina46/wait-for-it) without a registry:
# wait-for-it.sh HOST:PORT -t SECONDS
target=$1 timeout=${3:-30}
host=${target%:*} port=${target##*:}
i=0
while [ "$i" -lt "$timeout" ]; do
  if nc -w 1 "$host" "$port" </dev/null >/dev/null 2>&1; then exit 0; fi
  i=$((i + 1))
  sleep 1
done
echo "wait-for-it.sh: $target did not answer in ${timeout}s" >&2
exit 1
