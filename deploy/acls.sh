#!/usr/bin/env bash
# deploy/acls.sh [--dry-run] ROLE... — grant inbound-audit's roles least-privilege ACLs with Kafka's own
# kafka-acls tool. ROLE is mta, policy, worker, analytics or all. Run it as a super user of the cluster
# (the authorizer must be on: StandardAuthorizer in KRaft). It only adds ACLs; re-running it is harmless.
#
#   mta        write events
#   policy     write requests; create, read and delete its own reply topics (prefix audit.replies.);
#              read the series definitions (inbound-audit series list)
#   worker     read events and requests; read and write state and series; write dead letters, window summaries and
#              replies (prefix audit.replies.); its consumer groups and transactional ids (prefix GROUP);
#              Faust's internal topics (prefix GROUP-); describe the configs of every topic it checks
#   analytics  read window summaries and dead letters, with consumer group ANALYTICS_GROUP
#
# Environment (topic names and group as the workers have them; defaults are inbound-audit's):
#   KAFKA_BOOTSTRAP_SERVERS   the cluster (required)
#   KAFKA_ACLS                the kafka-acls command (default kafka-acls.sh; "deploy/kafka acls" locally)
#   KAFKA_ACLS_CONFIG         --command-config file: the admin client's security settings
#   MTA_PRINCIPAL POLICY_PRINCIPAL WORKER_PRINCIPAL ANALYTICS_PRINCIPAL   default User:mta, User:policy, ...
#   INBOUND_AUDIT_{EVENTS,REQUESTS,STATE,DEADLETTER,WINDOWS,SERIES}_TOPIC, INBOUND_AUDIT_GROUP_ID, ANALYTICS_GROUP
#   REPLY_TOPIC_PREFIX        default audit.replies. (what AuditClient names its reply topics)
# Each grant is one kafka-acls run; they run in parallel, and a failed one is tried once more on its own.
# --dry-run prints them instead.
set -euo pipefail

die() {
    echo "deploy/acls.sh: $*" >&2
    exit 1
}

dry_run=false
if [[ ${1:-} == --dry-run ]]; then
    dry_run=true
    shift
fi
(($# > 0)) || die "usage: deploy/acls.sh [--dry-run] mta|policy|worker|analytics|all ..."
[[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]] || die "KAFKA_BOOTSTRAP_SERVERS is required"

read -r -a kafka_acls <<<"${KAFKA_ACLS:-kafka-acls.sh}"
events="${INBOUND_AUDIT_EVENTS_TOPIC:-mta.events}"
requests="${INBOUND_AUDIT_REQUESTS_TOPIC:-audit.requests}"
state="${INBOUND_AUDIT_STATE_TOPIC:-audit.state}"
deadletter="${INBOUND_AUDIT_DEADLETTER_TOPIC:-audit.deadletter}"
windows="${INBOUND_AUDIT_WINDOWS_TOPIC:-audit.windows}"
series="${INBOUND_AUDIT_SERIES_TOPIC:-audit.series}"
group="${INBOUND_AUDIT_GROUP_ID:-inbound-audit}"
replies="${REPLY_TOPIC_PREFIX:-audit.replies.}"
mta="${MTA_PRINCIPAL:-User:mta}"
policy="${POLICY_PRINCIPAL:-User:policy}"
worker="${WORKER_PRINCIPAL:-User:worker}"
analytics="${ANALYTICS_PRINCIPAL:-User:analytics}"
analytics_group="${ANALYTICS_GROUP:-analytics}"

grants=()  # one line per kafka-acls run: PRINCIPAL PATTERN OPERATIONS(comma) RESOURCE-ARGS...

grant() {
    grants+=("$*")
}

role() {
    case "$1" in
    mta) grant "$mta" literal Write,Describe --topic "$events" ;;
    policy)
        grant "$policy" literal Write,Describe --topic "$requests"
        grant "$policy" prefixed Create,Read,Delete,Describe --topic "$replies"
        grant "$policy" literal Read,Describe --topic "$series"
        ;;
    worker)
        grant "$worker" literal Read,Describe --topic "$events" --topic "$requests" --topic "$state" --topic "$series"
        grant "$worker" literal Write --topic "$state" --topic "$deadletter" --topic "$windows" --topic "$series"
        grant "$worker" literal DescribeConfigs --topic "$events" --topic "$requests" --topic "$state" \
            --topic "$deadletter" --topic "$windows" --topic "$series"
        grant "$worker" prefixed Write,Describe --topic "$replies" --transactional-id "$group"
        grant "$worker" prefixed Read,Describe --group "$group"
        grant "$worker" prefixed Create,Read,Write,Describe,DescribeConfigs --topic "$group-"
        ;;
    analytics)
        grant "$analytics" literal Read,Describe --topic "$windows" --topic "$deadletter" --group "$analytics_group"
        ;;
    all) for each in mta policy worker analytics; do role "$each"; done ;;
    *) die "unknown role '$1' (mta, policy, worker, analytics, all)" ;;
    esac
}

command_line() {  # command_line PRINCIPAL PATTERN OPERATIONS RESOURCE-ARGS...: the kafka-acls arguments
    local principal="$1" pattern="$2" operations="$3" op
    local args=(--bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --add --allow-principal "$principal"
        --resource-pattern-type "$pattern")
    [[ -z ${KAFKA_ACLS_CONFIG:-} ]] || args+=(--command-config "$KAFKA_ACLS_CONFIG")
    for op in ${operations//,/ }; do
        args+=(--operation "$op")
    done
    printf '%s\n' "${args[@]}" "${@:4}"
}

for name in "$@"; do
    role "$name"
done

if $dry_run; then
    for line in "${grants[@]}"; do
        # shellcheck disable=SC2086 # the grant line is split on purpose
        mapfile -t args < <(command_line $line)
        echo "${kafka_acls[*]} ${args[*]}"
    done
    exit 0
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
pids=()
for i in "${!grants[@]}"; do
    # shellcheck disable=SC2086
    mapfile -t args < <(command_line ${grants[$i]})
    "${kafka_acls[@]}" "${args[@]}" >"$logs/$i.log" 2>&1 &
    pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" && continue
    # Adding an ACL is idempotent: one more try, alone, rides out a busy or just-started broker.
    # shellcheck disable=SC2086
    mapfile -t args < <(command_line ${grants[$i]})
    if ! "${kafka_acls[@]}" "${args[@]}" >"$logs/$i.log" 2>&1; then
        echo "deploy/acls.sh: kafka-acls failed for '${grants[$i]}': $(tail -n 1 "$logs/$i.log")" >&2
        failed=1
    fi
done
((failed == 0)) || exit 1
echo "granted ${#grants[@]} ACL sets for: $*"
