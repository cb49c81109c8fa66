package dev.ext4j.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** The kernel's mount table as seen by this process ({@code /proc/self/mountinfo}). */
public final class MountTable {
    private MountTable() {
    }

    /** One mountinfo line: the mount point, the filesystem type, the source (fsname) and the options. */
    public record Entry(String majorMinor, Path mountPoint, String fsType, String source, String mountOptions, String superOptions) {
        public boolean readOnly() {
            return List.of(mountOptions.split(",")).contains("ro");
        }
    }

    public static List<Entry> entries() {
        List<Entry> out = new ArrayList<>();
        List<String> lines;
        try {
            lines = Files.readAllLines(Path.of("/proc/self/mountinfo"), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        for (String line : lines) {
            // id parent maj:min root mountpoint options [optional fields...] - fstype source superoptions
            String[] f = line.split(" ");
            int dash = List.of(f).indexOf("-");
            if (dash < 6 || dash + 3 > f.length) {
                continue;
            }
            out.add(new Entry(f[2], Path.of(unescape(f[4])), unescape(f[dash + 1]), unescape(f[dash + 2]), f[5],
                    dash + 3 < f.length ? f[dash + 3] : ""));
        }
        return out;
    }

    /** The topmost mount on {@code mountPoint}, if any. */
    public static Optional<Entry> find(Path mountPoint) {
        Path p = mountPoint.toAbsolutePath().normalize();
        Entry found = null;
        for (Entry e : entries()) {
            if (e.mountPoint().equals(p)) {
                found = e; // later lines are mounted on top of earlier ones
            }
        }
        return Optional.ofNullable(found);
    }

    public static boolean isMountPoint(Path mountPoint) {
        return find(mountPoint).isPresent();
    }

    /** All mounts at or below {@code dir}: used to make sure a test leaves nothing behind. */
    public static List<Entry> under(Path dir) {
        Path d = dir.toAbsolutePath().normalize();
        return entries().stream().filter(e -> e.mountPoint().startsWith(d)).toList();
    }

    /** mountinfo escapes space, tab, newline and backslash as three octal digits. */
    static String unescape(String s) {
        if (s.indexOf('\\') < 0) {
            return s;
        }
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        byte[] raw = s.getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < raw.length; i++) {
            if (raw[i] == '\\' && i + 3 < raw.length) {
                try {
                    b.write(Integer.parseInt(new String(raw, i + 1, 3, StandardCharsets.US_ASCII), 8));
                    i += 3;
                    continue;
                } catch (NumberFormatException | IndexOutOfBoundsException e) {
                    // not an escape
                }
            }
            b.write(raw[i]);
        }
        return b.toString(StandardCharsets.UTF_8);
    }
}
