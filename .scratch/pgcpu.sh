#!/bin/bash
# snapshot cpu ticks of each postgres/node process: pid ticks title
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  c=$(tr '\0' ' ' < $p/cmdline 2>/dev/null) || continue
  case "$c" in postgres*|*postgres:*|node*) ;; *) continue;; esac
  s=$(cat $p/stat 2>/dev/null) || continue
  rest=${s##*) }; set -- $rest
  echo "$pid $(( ${12} + ${13} )) ${c:0:70}"
done
