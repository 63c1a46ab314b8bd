#!/usr/bin/env bash
# tests/user_bugs.sh valgrind|asan BUILD - runs every case of BUILD/tests/user_bugs
# (tests/user_bugs.c: one user's bug inside nofail memory each) under the
# checker and checks its report against what src/memcheck.h promises:
# each bug caught is reported, with the block memcheck was told about;
# what is not caught passes silently, and so does correct use. Ends with
# "N cases as expected, N not" and fails if any was not.
set -u
mode=$1
build=$2
program=$build/tests/user_bugs
valgrind_cmd=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=no -q)

# case | what valgrind must say (lines separated by ';'), or "-": not caught | ASan: caught or "-"
expectations='
correct-use                    | -                                                                      | -
malloc-use-after-free          | Invalid write of size 1;8 bytes inside a block of size 64 free'"'"'d    | caught
malloc-uninitialised           | points to uninitialised byte(s)                                        | -
malloc-overflow-into-free      | Invalid write of size 1;is 0 bytes after a;block of size 64 alloc'"'"'d  | caught
malloc-overflow-into-allocated | -                                                                      | -
large-use-after-free           | Invalid read of size 1;50,000 bytes inside a block of size 131,072 free'"'"'d | caught
cache-use-after-free           | Invalid write of size 1;20 bytes inside a block of size 40 free'"'"'d   | caught
page-use-after-free            | Invalid write of size 1;100 bytes inside a block of size 4,096 free'"'"'d | caught
page-uninitialised             | points to uninitialised byte(s)                                        | -
page-overflow-into-free        | Invalid write of size 1                                                | caught
mempool-use-after-free         | Invalid write of size 1;mempool_use_after_free (user_bugs.c | caught
'

trim() { sed -e 's/^ *//' -e 's/ *$//' <<< "$1"; }

good=0
bad=0
listed=$("$program")
while IFS='|' read -r name valgrind_says asan_says; do
	name=$(trim "$name")
	[ -n "$name" ] || continue
	valgrind_says=$(trim "$valgrind_says")
	asan_says=$(trim "$asan_says")
	if [ "$mode" = valgrind ]; then
		out=$("${valgrind_cmd[@]}" "$program" "$name" 2>&1)
		rc=$?
		problem=""
		if [ "$valgrind_says" = - ]; then
			# -q: valgrind prints only errors, each line starting ==pid==.
			if [ "$rc" -ne 0 ] || grep -q '^==[0-9]*==' <<< "$out"; then
				problem="expected no report (exit 0), got exit $rc"
			fi
		else
			[ "$rc" -eq 99 ] || problem="expected valgrind's error exit 99, got $rc"
			IFS=';' read -r -a lines <<< "$valgrind_says"
			for line in "${lines[@]}"; do
				grep -qF -- "$line" <<< "$out" || problem="$problem; no line saying \"$line\""
			done
		fi
	else
		out=$(ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 "$program" "$name" 2>&1)
		rc=$?
		problem=""
		if [ "$asan_says" = caught ]; then
			if [ "$rc" -eq 0 ] || ! grep -qF 'AddressSanitizer: use-after-poison' <<< "$out"; then
				problem="expected ASan's use-after-poison report, got exit $rc"
			fi
		elif [ "$rc" -ne 0 ] || grep -qF AddressSanitizer <<< "$out"; then
			problem="expected no report (exit 0), got exit $rc"
		fi
	fi
	if [ -z "$problem" ]; then
		good=$((good + 1))
		echo "ok   $name"
	else
		bad=$((bad + 1))
		echo "FAIL $name: ${problem#; }"
		printf '%s\n' "$out" | head -n 30
	fi
	listed=$(grep -vxF -- "$name" <<< "$listed")
done <<< "$expectations"
# A case the program has and this table lacks would go unchecked.
if [ -n "$listed" ]; then
	echo "FAIL cases without an expectation here: $listed"
	bad=$((bad + 1))
fi
echo "user_bugs ($mode): $good cases as expected, $bad not"
[ "$bad" -eq 0 ]
