# Busybox shell script test (systests/tests/linux_procs.rs): run as `busybox sh busybox.sh
# <bin-dir> <work-dir>` where <bin-dir> holds busybox and a link to it per applet. The output
# is deterministic (no pids, times or paths of the machine), so the host's run and Tutti's
# are compared line by line.
PATH=$1
cd "$2" || exit 90
# Messages on standard error (such as a job's "Terminated") are not compared.
exec 2>>errors
echo "== pipes and redirections"
echo hello | cat
echo one > f
echo two >> f
cat < f
wc -l < f
echo err 2>&1 >/dev/null | cat
{ echo a; echo b; } | tr a-z A-Z
echo "status of false: $(false; echo $?)"
echo "== subshells and substitutions"
x=outer
(x=inner; echo "in subshell: $x")
echo "after subshell: $x"
echo "nested: $(echo $(echo deep))"
(cd / && ls -d .)
echo "== loops and arithmetic"
for i in 1 2 3; do echo "item $i"; done | sort -r
i=0
while [ $i -lt 5 ]; do i=$((i + 1)); done
echo "counted to $i"
n=0
until [ $n -ge 3 ]; do n=$((n + 1)); echo "until $n"; done
case hello in h*) echo "case matched" ;; *) echo "case missed" ;; esac
f() { echo "function got $# args: $*"; return 4; }
f a b c
echo "function status $?"
echo "== text applets"
printf 'banana\napple\ncherry\napple\n' > fruit
sort fruit
sort -u fruit | wc -l
sort fruit | uniq -c | sed 's/^ *//'
grep -n an fruit
grep -c apple fruit
grep -v apple fruit | head -1
sed -n '2,3p' fruit
sed 's/a/A/g' fruit | tail -2
awk '{ n[$1]++ } END { for (k in n) print k, n[k] | "sort" }' fruit
awk -F: 'BEGIN { s = 0 } { s += $2 } END { print "sum", s }' <<END
a:1
b:2
c:39
END
echo "one two three four" | cut -d' ' -f2,4
echo "hello world" | tr 'lo' '01'
head -c 5 fruit; echo
tail -n 1 fruit
echo "== files"
mkdir -p d/e/f
echo data > d/e/f/file
cp d/e/f/file d/copy
mv d/copy d/moved
cat d/moved
ls -1 d
find d -type f | sort
find d -name '*ile' | xargs cat
echo x y z | xargs -n 1 echo arg
rm -r d/e
ls d
rm d/moved
rmdir d
ls -d d 2>/dev/null || echo "d is gone"
echo "== processes"
sleep 0.1 && echo "slept"
sleep 10 &
pid=$!
kill $pid
wait $pid
echo "killed sleeper status $?"
sh -c 'exit 7'
echo "child shell status $?"
(exit 3) || echo "subshell failed with $?"
true | false | true
echo "pipeline status $?"
date -u -d @86400 +%F
echo "years match $(date +%Y | grep -c '^20[0-9][0-9]$')"
echo "== /proc and ps"
sleep 3 &
bg=$!
# Until the child has exec'd sleep (before, it is a copy of this shell).
while [ -d /proc/$bg ] && [ "$(cat /proc/$bg/comm 2>/dev/null)" != sleep ]; do :; done
ps -o pid,ppid,comm | awk -v bg=$bg -v me=$$ '$1 == bg { print "ps -o: the sleep,", ($2 == me ? "child of this shell," : "parent " $2), $3 }'
ps | awk -v bg=$bg '$1 == bg { print "ps: the sleep, command", $(NF-1), $NF }'
echo "cmdline: $(tr '\0' ' ' < /proc/$bg/cmdline)"
echo "stat: $(cut -d' ' -f2 /proc/$bg/stat)"
grep -E '^(Name|PPid):' /proc/$bg/status | sed "s/$$\$/the shell/"
[ -d /proc/$$ ] && echo "the shell has a /proc directory"
echo "files: $(ls /proc/$$ | grep -c -E '^(cmdline|comm|stat|status)$')"
echo "exe: $(readlink /proc/$$/exe | sed 's,.*/,,')"
echo "the reader's own exe: $(readlink /proc/self/exe | sed 's,.*/,,')"
echo "uptime fields: $(wc -w < /proc/uptime)"
kill $bg
wait $bg
echo "after kill and wait: $([ -d /proc/$bg ] && echo still there || echo gone)"
echo "== done"
