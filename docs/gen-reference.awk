# SPDX-License-Identifier: Apache-2.0
#
# The extractor behind docs/gen-reference.sh (POSIX awk; run it through that
# script). Reads the public headers in order and writes the reference:
# mode "md" a Markdown file on stdout, mode "man" roff pages into outdir.
#
# What counts as a function's contract: the block comment that ends right
# above its VMM_API declaration, shared by the declarations that follow it
# with no blank line or other code between them, and a comment on the
# declaration's last line after the semicolon. A declaration with neither is
# reported on stderr, as is a header vmm.h does not include; the exit status
# is then 3.

function reset_pending() {
    pending = ""
    pending_id = 0
}

# One line of a comment's body, without the comment's own markup: the leading
# " * " (or "/*", "*/"), keeping any deeper indentation.
function comment_body(s) {
    sub(/^[ \t]*/, "", s)
    if (substr(s, 1, 2) == "/*")
        s = substr(s, 3)
    else if (substr(s, 1, 1) == "*" && substr(s, 2, 1) != "/")
        s = substr(s, 2)
    sub(/[ \t]*\*\/.*$/, "", s)
    if (substr(s, 1, 1) == " ")
        s = substr(s, 2)
    sub(/[ \t]+$/, "", s)
    return s
}

function add_comment_line(s) {
    s = comment_body(s)
    if (s == "" && cbuf == "")
        return # a leading "/*" line
    cbuf = cbuf s "\n"
}

function end_comment(text) {
    sub(/\n+$/, "", text)
    if (text ~ /SPDX-License-Identifier/) {
        reset_pending()
        return
    }
    if (!(cur in hdesc) && ndecl_file == 0 && !seen_code) {
        hdesc[cur] = text
        reset_pending()
        return
    }
    pending = text
    pending_id = ++comment_seq
}

# The declaration as one line, VMM_API dropped, whitespace collapsed.
function normalize(s) {
    gsub(/[ \t\n]+/, " ", s)
    sub(/^VMM_API /, "", s)
    gsub(/\( /, "(", s)
    gsub(/ \)/, ")", s)
    sub(/ ;$/, ";", s)
    return s
}

function func_name(s, head) {
    head = substr(s, 1, index(s, "(") - 1)
    sub(/[ \t*]+$/, "", head)
    if (match(head, /[A-Za-z_][A-Za-z0-9_]*$/))
        return substr(head, RSTART, RLENGTH)
    return ""
}

# Break a long prototype after top-level commas, continuation lines aligned
# under the first parameter.
function wrap(s, width, open, ind, out, cur, i, c, depth, piece, n, parts) {
    if (length(s) <= width)
        return s
    open = index(s, "(")
    ind = sprintf("%" open "s", "")
    n = 0
    depth = 0
    piece = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "(")
            depth++
        else if (c == ")")
            depth--
        if (c == "," && depth == 1) {
            parts[++n] = piece ","
            piece = ""
            if (substr(s, i + 1, 1) == " ")
                i++
            continue
        }
        piece = piece c
    }
    parts[++n] = piece
    out = ""
    cur = parts[1]
    for (i = 2; i <= n; i++) {
        if (length(cur) + 1 + length(parts[i]) <= width) {
            cur = cur " " parts[i]
        } else {
            out = out cur "\n"
            cur = ind parts[i]
        }
    }
    return out cur
}

function end_decl(text, trail, semi, proto, name) {
    semi = index(text, ";")
    trail = substr(text, semi + 1)
    text = substr(text, 1, semi)
    if (match(trail, /\/\*.*\*\//))
        trail = comment_body(substr(trail, RSTART, RLENGTH))
    else
        trail = ""
    proto = normalize(text)
    name = func_name(proto)
    nd++
    d_file[nd] = cur
    d_name[nd] = name
    d_proto[nd] = proto
    d_trail[nd] = trail
    if (pending_id != 0 && pending_id == last_group_comment) {
        d_group[nd] = ng
    } else {
        ng++
        g_comment[ng] = pending
        g_file[ng] = cur
        g_first[ng] = nd
        last_group_comment = pending_id
    }
    g_last[ng] = nd
    d_group[nd] = ng
    ndecl_file++
    if (pending_id == 0 && trail == "") {
        printf "%s:%d: %s has no contract comment\n", cur_path, decl_line, name > "/dev/stderr"
        problems++
    }
    if (pending_id == 0)
        last_group_comment = -1
}

FNR == 1 {
    cur_path = FILENAME
    cur = FILENAME
    sub(/^.*\//, "", cur)
    sub(/\.in$/, "", cur)
    nh++
    h_name[nh] = cur
    in_comment = 0
    in_decl = 0
    ndecl_file = 0
    seen_code = 0
    last_group_comment = -1
    reset_pending()
    if (cur != "vmm.h" && index(umbrella, " " cur " ") == 0) {
        printf "%s: <vmm/%s> is not included by <vmm/vmm.h>\n", cur_path, cur > "/dev/stderr"
        problems++
    }
}

in_comment {
    add_comment_line($0)
    if ($0 ~ /\*\//) {
        in_comment = 0
        end_comment(cbuf)
    }
    next
}

in_decl {
    dbuf = dbuf "\n" $0
    if (index($0, ";")) {
        in_decl = 0
        end_decl(dbuf)
    }
    next
}

/^[ \t]*\/\*/ {
    cbuf = ""
    add_comment_line($0)
    if (index(substr($0, index($0, "/*") + 2), "*/")) {
        end_comment(cbuf)
    } else {
        in_comment = 1
    }
    next
}

/^VMM_API / {
    decl_line = FNR
    dbuf = $0
    if (index($0, ";"))
        end_decl(dbuf)
    else
        in_decl = 1
    next
}

/^[ \t]*$/ {
    reset_pending()
    next
}

{
    if ($0 !~ /^#(ifndef|define) VMM_[A-Z0-9_]*_H$/)
        seen_code = 1
    reset_pending()
}

# ---- output helpers ----

function group_names(g, i, s) {
    s = ""
    for (i = g_first[g]; i <= g_last[g]; i++)
        s = s (s == "" ? "" : ", ") d_name[i]
    return s
}

# The group's declarations, each with its own trailing comment, wrapped at
# width columns.
function group_protos(g, width, i, s) {
    s = ""
    for (i = g_first[g]; i <= g_last[g]; i++) {
        s = s wrap(d_proto[i], width)
        if (d_trail[i] != "")
            s = s " /* " d_trail[i] " */"
        s = s "\n"
    }
    return s
}

function as_c_comment(text, n, lines, i, s) {
    if (text == "")
        return ""
    n = split(text, lines, "\n")
    if (n == 1 && length(lines[1]) <= 94)
        return "/* " lines[1] " */\n"
    s = "/*\n"
    for (i = 1; i <= n; i++)
        s = s (lines[i] == "" ? " *" : " * " lines[i]) "\n"
    return s " */\n"
}

function anchor(h) {
    gsub(/[^A-Za-z0-9_]/, "-", h)
    return h
}

# ---- Markdown ----

function write_md(h, g, count, i, first, line, item) {
    print "# libvmm API reference"
    print ""
    print "<!-- Generated by docs/gen-reference.sh from include/vmm/*.h: do not edit. After changing a"
    print "     public header, run `sh docs/gen-reference.sh`; the `reference` test fails until then. -->"
    print ""
    print "Every public function of libvmm with the contract its header gives it: what it does, what it"
    print "returns and which errors, who owns what, and from which threads it may be called. Errors are"
    print "negative errno values (`<vmm/error.h>`). Include `<vmm/vmm.h>` for everything, or the header"
    print "named in each section. The same text is installed as man pages (`man 3 vmm_vm_create`; `man 3"
    print "libvmm` lists them all). [writing-a-device.md](writing-a-device.md) shows how the pieces fit."
    print ""
    print "## Headers"
    print ""
    for (h = 1; h <= nh; h++) {
        count = 0
        for (i = 1; i <= nd; i++)
            if (d_file[i] == h_name[h])
                count++
        printf "- [`<vmm/%s>`](#%s): %s", h_name[h], anchor(h_name[h]), summary(hdesc[h_name[h]])
        printf " (%s).\n", count == 0 ? "types and constants only" : count == 1 ? "1 function" : count " functions"
    }
    for (h = 1; h <= nh; h++) {
        print ""
        printf "<a id=\"%s\"></a>\n\n", anchor(h_name[h])
        printf "## `<vmm/%s>`\n\n", h_name[h]
        if (hdesc[h_name[h]] != "") {
            print "```text"
            print hdesc[h_name[h]]
            print "```"
            print ""
        }
        first = 1
        for (g = 1; g <= ng; g++) {
            if (g_file[g] != h_name[h])
                continue
            if (first) {
                line = "Functions:"
                for (i = 1; i <= nd; i++) {
                    if (d_file[i] != h_name[h])
                        continue
                    item = sprintf("[%s](#%s)%s", d_name[i], d_name[i],
                                   i == nd || d_file[i + 1] != h_name[h] ? "." : ",")
                    if (length(line) + 1 + length(item) > 100) {
                        print line
                        line = item
                    } else {
                        line = line " " item
                    }
                }
                print line
                first = 0
            }
            print ""
            for (i = g_first[g]; i <= g_last[g]; i++)
                printf "<a id=\"%s\"></a>\n", d_name[i]
            print ""
            printf "### %s\n\n", group_names(g)
            print "```c"
            printf "%s", as_c_comment(g_comment[g])
            printf "%s", group_protos(g, 100)
            print "```"
        }
    }
}

# ---- man pages ----

function roff(s, out, i, c) {
    out = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\")
            out = out "\\e"
        else if (c == "-")
            out = out "\\-"
        else
            out = out c
    }
    if (out ~ /^[.']/)
        out = "\\&" out
    return out
}

# Comment text as roff: paragraphs filled, indented lines (diagrams, lists
# laid out by hand) kept as they are.
function roff_text(text, file, n, lines, i, nofill) {
    n = split(text, lines, "\n")
    nofill = 0
    for (i = 1; i <= n; i++) {
        if (lines[i] == "") {
            if (nofill) {
                print ".fi" > file
                nofill = 0
            }
            print ".PP" > file
            continue
        }
        if (lines[i] ~ /^[ \t]/ && !nofill) {
            print ".nf" > file
            nofill = 1
        } else if (lines[i] !~ /^[ \t]/ && nofill) {
            print ".fi" > file
            nofill = 0
        }
        print roff(lines[i]) > file
    }
    if (nofill)
        print ".fi" > file
}

# The first sentence of a comment, for the NAME line.
function summary(text, s, i) {
    s = text
    sub(/\n\n.*/, "", s) # the first paragraph at most
    gsub(/\n/, " ", s)
    gsub(/  +/, " ", s)
    gsub(/e\.g\. /, "e.g.\001", s)
    gsub(/i\.e\. /, "i.e.\001", s)
    # A sentence ends at a period after a word, not after a list number.
    if (match(s, /[A-Za-z)\]]\. /))
        s = substr(s, 1, RSTART)
    sub(/[.:]$/, "", s)
    gsub(/\001/, " ", s)
    return s
}

# The title line; identifiers are not hyphenated nor the text justified.
function th(name, file) {
    printf ".TH %s 3 \"\" \"libvmm%s\" \"libvmm Manual\"\n", toupper(name), version == "" ? "" : " " version > file
    print ".nh" > file
    print ".ad l" > file
}

function write_man(g, i, file, text, n, lines, h, first) {
    for (g = 1; g <= ng; g++) {
        file = outdir "/" d_name[g_first[g]] ".3"
        text = g_comment[g]
        if (text == "")
            text = d_trail[g_first[g]]
        printf ".\\\" Generated by docs/gen-reference.sh from <vmm/%s>: do not edit.\n", g_file[g] > file
        th(d_name[g_first[g]], file)
        print ".SH NAME" > file
        print roff(group_names(g)) " \\- " roff(summary(text)) > file
        print ".SH SYNOPSIS" > file
        print ".nf" > file
        print ".B #include <vmm/" g_file[g] ">" > file
        print ".PP" > file
        n = split(group_protos(g, 72), lines, "\n")
        for (i = 1; i < n; i++)
            print roff(lines[i]) > file
        print ".fi" > file
        print ".PP" > file
        print "Link with \\fI\\-lvmm\\fP (\\fIpkg\\-config \\-\\-libs vmm\\fP)." > file
        print ".SH DESCRIPTION" > file
        roff_text(text, file)
        print ".SH SEE ALSO" > file
        print ".BR libvmm (3)" > file
        close(file)
        for (i = g_first[g] + 1; i <= g_last[g]; i++) {
            print ".so man3/" d_name[g_first[g]] ".3" > (outdir "/" d_name[i] ".3")
            close(outdir "/" d_name[i] ".3")
        }
    }

    file = outdir "/libvmm.3"
    print ".\\\" Generated by docs/gen-reference.sh from include/vmm/*.h: do not edit." > file
    th("libvmm", file)
    print ".SH NAME" > file
    print "libvmm \\- a minimal, embeddable virtual machine monitor library over /dev/kvm" > file
    print ".SH SYNOPSIS" > file
    print ".nf" > file
    print ".B #include <vmm/vmm.h>" > file
    print ".fi" > file
    print ".PP" > file
    print "Link with \\fI\\-lvmm\\fP (\\fIpkg\\-config \\-\\-cflags \\-\\-libs vmm\\fP, or the CMake" > file
    print "package \\fIvmm\\fP, target \\fIvmm::vmm\\fP)." > file
    print ".SH DESCRIPTION" > file
    print "Each public header below, what it holds, and its functions, each with its own page." > file
    for (h = 1; h <= nh; h++) {
        print ".SS <vmm/" h_name[h] ">" > file
        roff_text(hdesc[h_name[h]], file)
        first = 1
        for (i = 1; i <= nd; i++) {
            if (d_file[i] != h_name[h])
                continue
            if (first) {
                print ".PP" > file
                print "Functions:" > file
                first = 0
            }
            print ".BR " d_name[i] " (3)" (i == nd || d_file[i + 1] != h_name[h] ? "" : ",") > file
        }
    }
    close(file)
}

END {
    if (mode == "md")
        write_md()
    else if (mode == "man")
        write_man()
    else {
        print "gen-reference.awk: mode must be md or man" > "/dev/stderr"
        exit 2
    }
    if (problems)
        exit 3
}
