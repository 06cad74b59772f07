# shellcheck shell=bash
# The helpers every launch script shares. A script sets LAUNCH_NAME, defines usage(), then sources this file:
#   parse_flags "SWITCHES" "VALUED" "$@"   its flags (below); what follows `--` lands in EXTRA_ARGS
#   die MESSAGE...                         one line on stderr, exit status 2
#   check_size SIZE                        dies unless SIZE is a configs/pretrain.py size
#   quote_all WORD...                      the words as one shell line that pastes back
#   run CMD...                             with DRY_RUN=1 print CMD; otherwise echo it on stderr and run it

die() {
  echo "${LAUNCH_NAME:-launch}: $*" >&2
  exit 2
}

# ${name^^} and empty arrays under set -u need bash 4 or newer; macOS ships bash 3.2 as /bin/bash.
((BASH_VERSINFO[0] >= 4)) || die "needs bash 4 or newer, not ${BASH_VERSION} (on macOS: brew install bash, then" \
  "run the script with that bash)"

# The sizes of configs/pretrain.py; any other --size dies.
check_size() {
  case $1 in
    tiny | small | small_plus | base | large) ;;
    *) die "--size=$1 is not one of tiny, small, small_plus, base, large" ;;
  esac
}

# Shell-quotes one word only when it needs it, so that dry-run lines read naturally and parse back.
quote() {
  local word=$1
  if [[ $word =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="$(quote "$word") "
  done
  printf '%s' "${out% }"
}

run() {
  if ((DRY_RUN)); then
    quote_all "$@"
    echo
  else
    echo "+ $(quote_all "$@")" >&2
    "$@"
  fi
}

# parse_flags "SWITCHES" "VALUED" "$@"
# SWITCHES and VALUED are space-separated flag names without the dashes, each optionally NAME:VARIABLE (the
# variable defaults to the name upper-cased). A switch --name sets its variable to 1; a valued flag takes
# --name=value or --name value. -h/--help prints usage and exits 0; the words after `--` go into EXTRA_ARGS;
# words that are not flags go into POSITIONAL (for scripts that take a command); an unknown flag dies.
parse_flags() {
  local switches=$1 valued=$2 arg name value variable spec
  shift 2
  # shellcheck disable=SC2034  # read by the script that called parse_flags
  EXTRA_ARGS=()
  POSITIONAL=()
  while (($#)); do
    arg=$1
    shift
    value=""
    [[ $arg == --*=* ]] && { value=${arg#*=}; arg=${arg%%=*}; }
    case $arg in
      -h | --help) usage; exit 0 ;;
      --)
        # shellcheck disable=SC2034  # read by the script that called parse_flags
        EXTRA_ARGS=("$@")
        return 0
        ;;
      --*) ;;
      -*) die "unknown flag $arg (see --help)" ;;
      *) POSITIONAL+=("$arg"); continue ;;
    esac
    name=${arg#--}
    variable=""
    for spec in $switches; do
      if [[ ${spec%%:*} == "$name" ]]; then
        variable=${spec#*:}
        [[ $spec == *:* ]] || variable=${name^^}
        printf -v "$variable" '%s' 1
        break
      fi
    done
    [[ -z $variable ]] || continue
    for spec in $valued; do
      if [[ ${spec%%:*} == "$name" ]]; then
        variable=${spec#*:}
        [[ $spec == *:* ]] || variable=${name^^}
        if [[ -z $value ]]; then
          (($# > 0)) || die "$arg needs a value"
          value=$1
          shift
        fi
        printf -v "$variable" '%s' "$value"
        break
      fi
    done
    [[ -n $variable ]] || die "unknown flag $arg (see --help)"
  done
}
