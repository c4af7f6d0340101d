# The `script` workload of `cargo xtask bench linux` (tools/linuxbench/lbench.c runs it):
#
#     busybox sh lbench.sh <busybox> <dir>
#
# Text processing that spawns exactly 200 processes: 40 rounds of a pipeline of five busybox
# applets (sed | tr | sort | uniq | awk), each started by its path (fork + execve of busybox).
# Everything else is a shell built-in, so it forks nothing: the input (200 lines) is written with
# echo, the loops count with $((...)). It prints one line per round and `done`; the output is the
# same on every system that runs the same busybox.
bb=$1
cd "$2" || exit 1
: > words
i=0
while [ $i -lt 200 ]; do
	echo "line $i: the quick brown fox $((i % 7)) jumps over the lazy dog $((i % 13)) again" >> words
	i=$((i + 1))
done
round=0
while [ $round -lt 40 ]; do
	$bb sed "/dog $((round % 13)) /d; s/fox $((round % 7)) /fox seven /" words |
		$bb tr -s ' :' '\n\n' |
		$bb sort |
		$bb uniq -c |
		$bb awk -v round=$round '{ n += $1; if ($1 > max) { max = $1; w = $2 } } END { print "round", round, NR, n, max, w }'
	round=$((round + 1))
done
echo done
