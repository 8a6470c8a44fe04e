# Reads the NoCloud files berth-os understands and writes one file per value into dir.
#   awk -v mode=meta -v dir=OUT -f cidata.awk meta-data   -> OUT/instance-id, OUT/local-hostname
#   awk -v mode=user -v dir=OUT -f cidata.awk user-data   -> OUT/authorized_keys, OUT/hostname,
#                                                            OUT/<type>_private, OUT/<type>_public
# user-data is a YAML subset: top-level "key: value" lines, "- item" lists (block or [flow]),
# "'single'"/"double" quoted or plain scalars, and "|" block scalars. Exit status 2 when
# user-data does not start with #cloud-config.

function unquote(v) {
	sub(/^[ \t]+/, "", v)
	if (match(v, /^"([^"\\]|\\.)*"/)) {
		v = substr(v, 2, RLENGTH - 2)
		gsub(/\\"/, "\"", v)
		gsub(/\\\\/, "\\", v)
		return v
	}
	if (match(v, /^'([^']|'')*'/)) {
		v = substr(v, 2, RLENGTH - 2)
		gsub(/''/, "'", v)
		return v
	}
	sub(/[ \t]+#.*$/, "", v)
	sub(/[ \t]+$/, "", v)
	return v
}
function indent_of(s) {
	match(s, /^ */)
	return RLENGTH
}
function put(name, value) {
	printf "%s\n", value > (dir "/" name)
	close(dir "/" name)
}
function add_key(k) {
	if (k == "") return
	print k >> (dir "/authorized_keys")
}
function flow_keys(v, n, i, items) {  # [ "a", b ]
	sub(/^[ \t]*\[/, "", v)
	sub(/\][ \t]*$/, "", v)
	n = split(v, items, ",")
	for (i = 1; i <= n; i++) add_key(unquote(items[i]))
}
function end_block(text) {
	sub(/\n+$/, "", text)
	if (text != "") put(block_name, text)
	in_block = 0
}

{ sub(/\r$/, "") }

mode == "meta" {
	# YAML ("key: value") or JSON ({"key": "value", ...})
	line = $0
	while (match(line, /"(instance-id|local-hostname)"[ \t]*:[ \t]*"[^"]*"/)) {
		kv = substr(line, RSTART, RLENGTH)
		line = substr(line, RSTART + RLENGTH)
		k = kv; sub(/^"/, "", k); sub(/".*/, "", k)
		v = kv; sub(/^"[^"]*"[ \t]*:[ \t]*"/, "", v); sub(/"$/, "", v)
		put(k, v)
	}
	if (match($0, /^(instance-id|local-hostname)[ \t]*:/)) {
		k = substr($0, 1, RLENGTH - 1)
		sub(/[ \t]+$/, "", k)
		put(k, unquote(substr($0, RLENGTH + 1)))
	}
	next
}

NR == 1 {
	if ($0 !~ /^#cloud-config[ \t]*$/) { bad = 1; exit 2 }
	next
}

in_block {
	if ($0 ~ /^[ \t]*$/) { block_text = block_text "\n"; next }
	ind = indent_of($0)
	if (block_indent < 0 && ind > key_indent) block_indent = ind
	if (block_indent >= 0 && ind >= block_indent) {
		block_text = block_text substr($0, block_indent + 1) "\n"
		next
	}
	end_block(block_text)
}

/^[ \t]*#/ || /^[ \t]*$/ { next }

{
	ind = indent_of($0)
	line = substr($0, ind + 1)
	if (section == "ssh_authorized_keys" && line ~ /^-([ \t]|$)/) {
		add_key(unquote(substr(line, 2)))
		next
	}
	if (ind == 0) {
		section = ""
		if (!match(line, /^[A-Za-z0-9_-]+[ \t]*:/)) next
		key = substr(line, 1, RLENGTH - 1)
		sub(/[ \t]+$/, "", key)
		value = unquote(substr(line, RLENGTH + 1))
		if (key == "ssh_authorized_keys") {
			section = key
			if (value ~ /^\[/) flow_keys(value)
		} else if (key == "ssh_keys") {
			section = key
		} else if (key == "hostname" && value != "") {
			put("hostname", value)
		}
		next
	}
	if (section == "ssh_keys" && match(line, /^[a-z0-9]+_(private|public)[ \t]*:/)) {
		name = substr(line, 1, RLENGTH - 1)
		sub(/[ \t]+$/, "", name)
		value = substr(line, RLENGTH + 1)
		sub(/^[ \t]+/, "", value)
		if (value ~ /^[|>][-+0-9]*[ \t]*(#.*)?$/) {
			in_block = 1
			block_name = name
			block_text = ""
			key_indent = ind
			block_indent = -1
		} else {
			put(name, unquote(value))
		}
	}
}

END {
	if (bad) exit 2
	if (in_block) end_block(block_text)
}
