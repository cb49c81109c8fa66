package dev.ext4j.io;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Who else uses an image file, as the host shows it: the loop devices it backs
 * ({@code /sys/block/loop*}{@code /loop/backing_file}) and the mounts whose source it is
 * ({@code /proc/self/mountinfo}; an ext4j FUSE mount's source is the image's real path). Used to
 * say why an image is busy; every lookup answers "nothing" where the host has no such files.
 */
public final class ImageUse {
    private ImageUse() {
    }

    /** One line of /proc/self/mountinfo: the mount point, the filesystem type and the source. */
    public record MountEntry(String mountPoint, String fsType, String source, List<String> options, String device) {
    }

    /** The loop device (e.g. /dev/loop3) backed by {@code image}, compared by device and inode. */
    public static Optional<String> loopDeviceOf(Path image) {
        Object key = fileKey(image);
        if (key == null) {
            return Optional.empty();
        }
        try (DirectoryStream<Path> loops = Files.newDirectoryStream(Path.of("/sys/block"), "loop*")) {
            for (Path loop : loops) {
                Path backing = loop.resolve("loop/backing_file");
                if (!Files.isReadable(backing)) {
                    continue; // not attached
                }
                String file = Files.readString(backing, StandardCharsets.ISO_8859_1).strip();
                if (key.equals(fileKey(Path.of(file)))) {
                    return Optional.of("/dev/" + loop.getFileName());
                }
            }
        } catch (IOException | RuntimeException e) {
            return Optional.empty();
        }
        return Optional.empty();
    }

    /** The mount points whose mount source is {@code image} (an ext4j mount names its image there). */
    public static List<String> mountPointsOf(Path image) {
        String path = image.toAbsolutePath().normalize().toString();
        List<String> out = new ArrayList<>();
        for (MountEntry e : mounts()) {
            if (e.source().equals(path)) {
                out.add(e.mountPoint());
            }
        }
        return out;
    }

    /** The mounts this process sees; empty where /proc/self/mountinfo cannot be read. */
    public static List<MountEntry> mounts() {
        List<MountEntry> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"), StandardCharsets.ISO_8859_1)) {
                // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
                String[] f = line.split(" ");
                int dash = List.of(f).indexOf("-");
                if (f.length > 4 && dash > 4 && dash + 2 < f.length) {
                    out.add(new MountEntry(unescape(f[4]), unescape(f[dash + 1]), unescape(f[dash + 2]), List.of(f[5].split(",")), f[2]));
                }
            }
        } catch (IOException e) {
            return List.of();
        }
        return out;
    }

    /** mountinfo escapes space, tab, newline and backslash as a backslash and three octal digits. */
    static String unescape(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 3 < s.length()) {
                b.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
                i += 3;
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    /** The file's device and inode ({@code BasicFileAttributes.fileKey()} on Linux), null if it cannot be read. */
    private static Object fileKey(Path file) {
        try {
            return Files.readAttributes(file, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }
}
