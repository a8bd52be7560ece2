# Sourced by render_image.sh and render_video.sh: whether the default model gets its even mix of styles.
# The default model, models/all-styles.pth, carries both bundled styles: unless a style, a mix or another model
# is chosen (in the variables or among the extra arguments), it renders their even mix. One list of the flags
# that choose, for both scripts (--model and --model-path are the same flag of both render scripts).
# Usage: even_mix "$MODEL" "$STYLE$STYLE_MIX$STYLE_SCHEDULE" "$@"
even_mix() {
    local model="$1" chosen="$2" arg
    shift 2
    [ "$(realpath -m -- "$model")" = "$(realpath -m models/all-styles.pth)" ] && [ -z "$chosen" ] || return 1
    for arg in "$@"; do
        case "$arg" in
            --style|--style=*|--style-mix|--style-mix=*|--style-schedule|--style-schedule=*) return 1 ;;
            --style-image|--style-image=*) return 1 ;;
            --model|--model=*|--model-path|--model-path=*|--list-styles) return 1 ;;
        esac
    done
}
