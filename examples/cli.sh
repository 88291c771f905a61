#!/bin/sh
# inbound-audit from a shell, with the same environment as the worker.
set -e

# Some realistic traffic from 3 MTAs; it ends by printing the abusive blocks it used.
inbound-audit simulate --nodes 3 --rate 500 --duration 2 --seed 1

# Momentum's console 'show ip': every window of every monitor, for a block (whole fleet).
inbound-audit show-ip 192.0.2.0/24

# One msys.audit call; flags mirror the Lua options.
inbound-audit query connections --monitor 300,6 --ip 192.0.2.66 --cidr /24 --cluster
inbound-audit query rejections --monitor 300,6 --cidr 192.0.2.0/24 --node mta-1 --startv 0 --endv 5
inbound-audit query inbound_session_count --ip 192.0.2.66 --node mta-1
inbound-audit query connections --monitor 120,5 --cluster --ip 192.0.2.66 || echo "exit status $?"

# A Momentum policy script, run for one session.
inbound-audit lua examples/policy.lua --hook validate_mailfrom --ip 192.0.2.66 --node mta-1

# Events and requests the pipeline refused, newest last.
inbound-audit deadletters --last 5
