package dev.ext4j.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code mount -o remount,ro|rw MOUNTPOINT}: mount(8) runs the helper again ({@code ext4j IMAGE
 * MOUNTPOINT -o ...,remount,...}, with the mount's current options besides), and so does
 * {@code ext4j mount -o remount,ro [IMAGE] MOUNTPOINT}. No server starts: the one serving the mount
 * point switches through its control file ({@code remount ro|rw}), and as root the kernel's view
 * of the mount follows ({@code mount -i -o remount,ro|rw}, so /proc/mounts says it). Only ro and rw
 * change; the other options a remount carries are left as they are.
 *
 * <p>The kernel refuses to open the control file for writing once its view is read-only, and to
 * go read-only while a file is open for writing, so read-only goes server first (back to
 * read-write if the kernel refuses), read-write kernel first (back to read-only if the server
 * refuses).
 */
final class Remount {
    private Remount() {
    }

    /** Whether an option list on the command line holds {@code remount}. */
    static boolean requested(List<String> args) {
        return options(args, new ArrayList<>()).contains("remount");
    }

    /** The {@code -o} options, split on commas; the other arguments that are no flags go to {@code positional}. */
    private static List<String> options(List<String> args, List<String> positional) {
        List<String> opts = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("-o") && i + 1 < args.size()) {
                opts.addAll(List.of(args.get(++i).split(",")));
            } else if (a.startsWith("-o")) {
                opts.addAll(List.of(a.substring(2).split(",")));
            } else if (!a.startsWith("-")) {
                positional.add(a);
            }
        }
        return opts;
    }

    static int run(List<String> args, PrintStream err) {
        List<String> positional = new ArrayList<>();
        Boolean readOnly = null;
        String control = MountSpec.DEFAULT_CONTROL;
        for (String o : options(args, positional)) {
            if (o.equals("ro") || o.equals("rw")) {
                readOnly = o.equals("ro"); // the last one wins
            } else if (o.startsWith("control=")) {
                control = o.substring(8);
            }
        }
        if (positional.isEmpty() || positional.size() > 2) {
            err.println("ext4j: remount needs the MOUNTPOINT (mount -o remount,ro MOUNTPOINT)");
            return 2;
        }
        Path mnt;
        try {
            mnt = Path.of(positional.get(positional.size() - 1)).toRealPath();
        } catch (IOException e) {
            err.println("ext4j: cannot remount " + positional.get(positional.size() - 1) + ": " + e.getMessage());
            return 1;
        }
        if (!Daemon.isMounted(mnt)) {
            err.println("ext4j: cannot remount " + mnt + ": not a mount point");
            return 1;
        }
        if (readOnly == null) {
            err.println("ext4j: remount of " + mnt + " without ro or rw: nothing to change");
            return 0;
        }
        Path ctl = mnt.resolve(control);
        boolean root = Main.ownIds()[0] == 0;
        boolean kernelReadOnly = Daemon.mountOptions(mnt).map(o -> o.contains("ro")).orElse(false);
        try {
            if (readOnly) {
                command(ctl, "remount ro");
                if (root && !kernelReadOnly && kernelRemount(mnt, "ro", err) != 0) {
                    command(ctl, "remount rw");
                    err.println("ext4j: the kernel refused to remount " + mnt + " read-only (a file open for writing?); it stays read-write");
                    return 1;
                }
            } else {
                if (root && kernelReadOnly && kernelRemount(mnt, "rw", err) != 0) {
                    err.println("ext4j: the kernel refused to remount " + mnt + " read-write");
                    return 1;
                }
                try {
                    command(ctl, "remount rw");
                } catch (IOException e) {
                    if (root && kernelReadOnly) {
                        kernelRemount(mnt, "ro", err);
                    }
                    throw e;
                }
            }
        } catch (NoSuchFileException e) {
            err.println("ext4j: " + mnt + " has no control file " + control + ": not an ext4j mount? (if it was mounted with"
                    + " -o control=NAME, give the same option)");
            return 1;
        } catch (IOException e) {
            err.println("ext4j: remount of " + mnt + (readOnly ? " read-only" : " read-write") + " failed: " + e.getMessage());
            return 1;
        }
        if (!root) {
            err.println("ext4j: " + mnt + " is " + (readOnly ? "read-only" : "read-write")
                    + " in ext4j; only root can remount the kernel's view, which /proc/mounts shows");
        }
        return 0;
    }

    /**
     * Writes one command to the control file and reads the reply: returns "ok ..." or throws with
     * the server's own reason (the errno and message after "error ").
     */
    private static String command(Path ctl, String cmd) throws IOException {
        try (FileChannel ch = FileChannel.open(ctl, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            IOException failed = null;
            try {
                ch.write(ByteBuffer.wrap((cmd + "\n").getBytes(StandardCharsets.ISO_8859_1)));
            } catch (IOException e) {
                failed = e;
            }
            ByteBuffer reply = ByteBuffer.allocate(4096);
            while (reply.hasRemaining() && ch.read(reply) > 0) {
                // the reply is short; read to its end
            }
            String text = new String(reply.array(), 0, reply.position(), StandardCharsets.ISO_8859_1).strip();
            if (failed != null || !text.startsWith("ok ")) {
                throw new IOException(text.startsWith("error ") ? text.substring(6) : failed != null ? failed.getMessage() : text);
            }
            return text;
        }
    }

    /** {@code mount -i -o remount,MODE MNT}: the kernel's flag only (-i: no helper, not this program again). */
    private static int kernelRemount(Path mnt, String mode, PrintStream err) {
        return Daemon.runQuietly(err, "mount", "-i", "-o", "remount," + mode, mnt.toString());
    }
}
