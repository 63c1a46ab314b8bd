#!/usr/bin/env bash
# tests/preload/run.sh BUILD - real programs on LD_PRELOAD=BUILD/libnofail-malloc.so
# (make test-preload). Each check prints "pass NAME" or "FAIL NAME" with
# what it saw; the script exits non-zero if any failed. Installs python3,
# sqlite3 and git through scripts/apt-install.sh when they are missing.
set -u
cd "$(dirname "$0")/../.."
build=${1:-build}
lib=$PWD/$build/libnofail-malloc.so
bin=$build/preload-tests
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$bin"
[ -f "$lib" ] || { echo "test-preload: $lib is missing (make preload)"; exit 1; }
scripts/apt-install.sh test-preload python3 sqlite3 git >/dev/null || exit 1

passed=0
failed=0
# check NAME EXPECTED COMMAND...: runs COMMAND under the preload library (60 s at most) and
# passes if it exits 0 and its output contains EXPECTED.
check() {
	local name=$1 expected=$2
	shift 2
	local out rc
	out=$(LD_PRELOAD=$lib timeout -k 5 60 "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -qF -- "$expected"; then
		echo "pass $name: $(printf '%s\n' "$out" | grep -F -- "$expected" | head -n 1)"
		passed=$((passed + 1))
	else
		echo "FAIL $name (exit $rc, wanted \"$expected\"):"
		printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

cc=${CC:-cc}
for t in api threads waits; do
	$cc -std=gnu11 -O1 -g -Wall -Wextra -pthread -o "$bin/$t" "tests/preload/$t.c" || exit 1
done

# Debian's python3, not a pyenv shim or one built with its own allocator.
py=/usr/bin/python3
python_workload='
import json, random, collections
random.seed(1)
d = {}
for i in range(200000):
    d[str(i)] = [random.random() for _ in range(i % 7)]
s = json.dumps(d)
back = json.loads(s)
c = collections.Counter(len(v) for v in back.values())
big = bytearray(32 << 20)
parts = "".join(str(i) for i in range(300000))
assert back == d and sum(c.values()) == 200000 and len(big) == 32 << 20
print("python3: ok: 200000 keys through json (%d bytes), counts %s" % (len(s), sorted(c.items())[:3]))
'
# PYTHONMALLOC=malloc: CPython's small objects otherwise come from its own arenas (mmap), not malloc.
check python3 "python3: ok" env PYTHONMALLOC=malloc $py -c "$python_workload"
# The same inside a budget of 512 MiB: what NOFAIL_BUDGET is for.
check python3-512M "python3: ok" env PYTHONMALLOC=malloc NOFAIL_BUDGET=512M $py -c "$python_workload"
# Past the budget: a single thread has nobody to wait for, so Python sees NULL as MemoryError and lives.
check python3-over-budget "MemoryError inside 64M" env PYTHONMALLOC=malloc NOFAIL_BUDGET=64M NOFAIL_WAIT_MS=0 $py -c '
try:
    x = [str(i) * 10 for i in range(10 ** 7)]
except MemoryError:
    print("python3: MemoryError inside 64M, and the program goes on")
'
# The statistics at exit (NOFAIL_STATS=1) are part of the same run.
check python3-stats "domain default: budget" env NOFAIL_STATS=1 $py -c 'print(sum(range(1000)))'

db=$scratch/test.db
check sqlite3 "50000|1249975000|49999" sqlite3 "$db" '
create table t(id integer primary key, v integer, s text);
with recursive n(i) as (select 1 union all select i + 1 from n where i < 50000)
insert into t(v, s) select i - 1, printf("row %08d %s", i, hex(randomblob(32))) from n;
create index t_s on t(s);
select count(*), sum(v), max(v) from t where s like "row %";'

repo=$scratch/repo
mkdir -p "$repo"
for i in $(seq 1 200); do seq 1 "$i" >"$repo/file$i.txt"; done
check git-init "Initialized empty Git repository" git init -b main "$repo"
check git-add "added" sh -c "git -C '$repo' add . && echo added"
check git-commit "200 files changed" git -C "$repo" -c user.name=nofail -c user.email=nofail@example.invalid \
	commit -m "two hundred files"
check git-log "two hundred files" git -C "$repo" log --oneline
check git-fsck "ok" sh -c "git -C '$repo' fsck --no-progress --strict && echo ok"

check threads "threads: ok" "$bin/threads"
check waits "waits: ok" env NOFAIL_BUDGET=64M NOFAIL_WAIT_MS=10000 "$bin/waits"
check wait-limit "NOFAIL_WAIT_MS=100 ms" sh -c "NOFAIL_BUDGET=64M NOFAIL_WAIT_MS=100 '$bin/waits'; true"
check api "api: ok" "$bin/api"
if command -v g++ >/dev/null 2>&1; then
	g++ -O1 -g -Wall -Wextra -o "$bin/cxx" tests/preload/cxx.cc || exit 1
	check c++ "cxx: ok" "$bin/cxx"
else
	echo "skip c++: g++ is not installed (operator new reaching malloc is not checked)"
fi

echo "test-preload: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
