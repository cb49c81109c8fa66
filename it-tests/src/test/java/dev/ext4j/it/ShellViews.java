package dev.ext4j.it;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Views of a mounted tree taken by standard tools in child processes (so a hanging mount cannot
 * hang the test JVM): find -printf listings with st_blocks and inode numbers, getfattr dumps of all
 * xattr namespaces, statfs numbers.
 */
public final class ShellViews {
    private static final Duration TIMEOUT = Duration.ofMinutes(3);

    private ShellViews() {
    }

    /**
     * One line per entry (path relative to root → "type ino blocks nlink mode uid gid size mtime ctime atime target"),
     * from {@code find -printf}. Entries whose first path component is in {@code excludeTop} are left out.
     */
    public static Map<String, String> findListing(Path root, boolean withIno, boolean withBlocks, boolean withTimes, String... excludeTop) {
        String fmt = "%P\\t%y " + (withIno ? "ino=%i " : "") + (withBlocks ? "blocks=%b " : "")
                + "nlink=%n mode=%m uid=%U gid=%G size=%s" + (withTimes ? " mtime=%T@ ctime=%C@ atime=%A@" : "") + " link=%l\\0";
        return find(root, fmt, excludeTop);
    }

    /** path → "mtime=SECONDS.NANOS" from {@code find -printf %T@}: exact for any date, unlike Java's FileTime (which ends in 2262). */
    public static Map<String, String> mtimes(Path root, String... excludeTop) {
        return find(root, "%P\\t%T@\\0", excludeTop);
    }

    /**
     * {@code find -printf FMT} where FMT prints "PATH\tVALUE\0" per entry, as path → value; entries
     * whose first path component is in {@code excludeTop} are left out.
     */
    private static Map<String, String> find(Path root, String fmt, String... excludeTop) {
        Tools.Result r = Tools.run(TIMEOUT, null, root, List.of("find", ".", "-mindepth", "1", "-printf", fmt)).requireOk();
        Map<String, String> out = new TreeMap<>();
        for (String rec : r.stdout().split("\0")) {
            if (rec.isEmpty()) {
                continue;
            }
            int tab = rec.indexOf('\t');
            String path = rec.substring(0, tab);
            String top = path.contains("/") ? path.substring(0, path.indexOf('/')) : path;
            if (!List.of(excludeTop).contains(top)) {
                out.put(path, rec.substring(tab + 1));
            }
        }
        return out;
    }

    /** Every xattr of every entry (all namespaces, symlinks not followed), as path → sorted "name=0xhex" lines. */
    public static Map<String, TreeSet<String>> xattrDump(Path root, String... excludeTop) {
        Tools.Result r = Tools.run(TIMEOUT, null, root, List.of("getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "."));
        // getfattr exits 1 when some entry has no xattrs support; the dump itself is still complete
        if (r.timedOut() || r.exitCode() > 1) {
            throw new AssertionError(r.describe());
        }
        Map<String, TreeSet<String>> out = new TreeMap<>();
        String current = null;
        for (String line : r.stdout().split("\n")) {
            if (line.startsWith("# file: ")) {
                current = line.substring(8);
                if (current.startsWith("./")) {
                    current = current.substring(2);
                }
                String top = current.contains("/") ? current.substring(0, current.indexOf('/')) : current;
                if (List.of(excludeTop).contains(top)) {
                    current = null;
                }
            } else if (!line.isBlank() && current != null) {
                out.computeIfAbsent(current, k -> new TreeSet<>()).add(line);
            }
        }
        return out;
    }

    /** statfs numbers: total/free/available blocks, total/free inodes, block size, fundamental block size, max name length. */
    public static String statfs(Path mount) {
        return Tools.run(Duration.ofSeconds(30), "stat", "-f", "-c", "blocks=%b bfree=%f bavail=%a files=%c ffree=%d bsize=%s frsize=%S namemax=%l", mount.toString())
                .requireOk().stdout().strip();
    }

    /** The numbers of {@link #statfs(Path)} by name ("bfree" → free blocks, "ffree" → free inodes, ...). */
    public static Map<String, Long> statfsNumbers(Path mount) {
        Map<String, Long> out = new TreeMap<>();
        for (String field : statfs(mount).split(" ")) {
            int eq = field.indexOf('=');
            out.put(field.substring(0, eq), Long.parseLong(field.substring(eq + 1)));
        }
        return out;
    }

    /** Differences between two maps of per-path descriptions, as readable lines. */
    public static <V> List<String> diffMaps(String what, Map<String, V> expected, Map<String, V> actual, int max) {
        List<String> out = new ArrayList<>();
        TreeSet<String> keys = new TreeSet<>(expected.keySet());
        keys.addAll(actual.keySet());
        for (String k : keys) {
            V e = expected.get(k);
            V a = actual.get(k);
            if (e == null) {
                out.add(what + " " + k + ": unexpected " + a);
            } else if (a == null) {
                out.add(what + " " + k + ": missing, expected " + e);
            } else if (!e.equals(a)) {
                out.add(what + " " + k + ": " + a + "\n    expected " + e);
            }
            if (out.size() >= max) {
                out.add("... (more)");
                break;
            }
        }
        return out;
    }
}
