package dev.ext4j.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * {@code mount -o remount,ro} and {@code remount,rw} through mount(8) on a {@code fuse.ext4j}
 * mount (issue 17, item 8): no second server starts; the running one writes everything home and
 * goes read-only (the image e2fsck-clean while mounted), the kernel's view follows, a file open
 * for writing makes the kernel refuse (and the mount stays writable), and read-write brings
 * changes back; an image mounted ro cannot go read-write (the kernel's view goes back to ro). As in {@link CliIT}, mount(8) needs ext4j in /usr/local/bin, so everything runs in a
 * private mount namespace with a directory holding the link bind-mounted there.
 */
class RemountIT extends FuseTestBase {

    @Test
    void remountReadOnlyAndBackThroughMount8() throws IOException {
        Path image = scratch.resolve("remount.img");
        Tools.mkfs(null, image, "64M", List.of());
        Path bin = newDir("path");
        Files.createSymbolicLink(bin.resolve("ext4j"), Tools.root().resolve("bin/ext4j"));
        Path mnt = newDir("mnt");
        Path log = scratch.resolve("remount.log");
        Map<String, String> env = new HashMap<>();
        env.put("PATH", bin + ":" + Path.of(Tools.java()).getParent() + ":" + System.getenv("PATH"));
        String script = """
                set -u
                export LC_ALL=C  # the tools' messages as matched below
                bin="$1"; img="$2"; mnt="$3"; log="$4"
                mount --bind "$bin" /usr/local/bin || exit 90
                mount -t fuse.ext4j "$img" "$mnt" -o "log=$log" || exit 91
                flag() { awk -v m="$mnt" '$2 == m { split($4, o, ","); print o[1] }' /proc/self/mounts; }
                pid=$(cat "${XDG_RUNTIME_DIR:-/tmp}/ext4j-$(id -un)/$(echo "$mnt" | tr / _).pid" 2>/dev/null || true)
                echo "mounted: $(flag)"
                echo before > "$mnt/before.txt"
                mkdir "$mnt/dir" && seq 1 100000 > "$mnt/dir/numbers"
                exec 3<"$mnt/before.txt"  # open for reading across both remounts
                mount -o remount,ro "$mnt"; echo "remount-ro-rc=$?"
                echo "after-ro: $(flag)"
                echo "servers: $(pgrep -fc "dev.ext4j.cli.Main mount -f .* $mnt\\$")"
                touch "$mnt/new.txt" 2>&1 | sed 's/^/touch: /'
                mkdir "$mnt/newdir" 2>&1 | sed 's/^/mkdir: /'
                echo "read: $(cat "$mnt/before.txt") $(wc -l < "$mnt/dir/numbers")"
                echo "read-open-fd: $(cat <&3)"
                grep '^read_only:' "$mnt/.ext4j-control"
                e2fsck -fn "$img" > "$img.fsck" 2>&1; echo "fsck-while-ro-rc=$?"
                dumpe2fs -h "$img" 2>/dev/null | grep -E '^Filesystem (state|features):' | sed -E 's/: +/: /; s/^/sb: /'
                mount -o remount,rw "$mnt"; echo "remount-rw-rc=$?"
                echo "after-rw: $(flag)"
                echo after > "$mnt/after.txt"; echo "write-rw-rc=$?"
                exec 4>>"$mnt/after.txt"  # open for writing: the kernel refuses to go read-only
                mount -o remount,ro "$mnt" 2>&1 | sed 's/^/busy: /'
                echo "after-busy: $(flag)"
                echo more >&4; echo "write-after-busy-rc=$?"
                exec 3<&- 4>&-
                umount "$mnt"; echo "umount-rc=$?"
                for i in $(seq 1 300); do
                    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "server-alive-after-umount"; else echo "server-gone"; fi
                # mounted ro, the image is opened read-only: remount,rw is refused and the kernel's view goes back to ro
                mount -t fuse.ext4j "$img" "$mnt" -o "ro,log=$log" || exit 92
                mount -o remount,rw "$mnt" 2>&1 | sed 's/^/ro-image: /'
                echo "ro-image-after: $(flag)"
                umount "$mnt"; echo "umount-ro-rc=$?"
                """;
        Tools.Result r = Tools.run(Duration.ofMinutes(3), env, null, List.of("unshare", "-m", "--propagation", "private", "bash", "-c", script,
                "bash", bin.toString(), image.toString(), mnt.toString(), log.toString()));
        MountedImage.findServer(mnt).ifPresent(Tools::killTree); // whatever happened, no server of ours survives
        String out = r.stdout();
        Path fsck = Path.of(image + ".fsck");
        String all = r.describe() + "\n--- e2fsck while read-only ---\n" + (Files.exists(fsck) ? Files.readString(fsck) : "(none)")
                + "\n--- server log ---\n" + (Files.exists(log) ? Files.readString(log) : "(none)");
        for (String line : List.of("mounted: rw", "remount-ro-rc=0", "after-ro: ro", "servers: 1",
                "touch: touch: cannot touch '" + mnt + "/new.txt': Read-only file system",
                "mkdir: mkdir: cannot create directory '" + mnt + "/newdir': Read-only file system",
                "read: before 100000", "read-open-fd: before", "read_only: yes (remounted read-only)",
                "fsck-while-ro-rc=0", "sb: Filesystem state: clean",
                "remount-rw-rc=0", "after-rw: rw", "write-rw-rc=0", "after-busy: rw", "write-after-busy-rc=0",
                "umount-rc=0", "server-gone", "ro-image-after: ro", "umount-ro-rc=0")) {
            assertTrue(out.lines().anyMatch(line::equals), "expected the line '" + line + "': " + all);
        }
        assertTrue(out.contains("busy: ") && out.contains("stays read-write"), "the kernel refuses while a file is open for writing: " + all);
        assertTrue(out.contains("ro-image: ext4j: remount of " + mnt + " read-write failed: EROFS: the image was opened read-only"),
                "an image mounted ro has no writable channel: " + all);
        assertTrue(out.lines().noneMatch(l -> l.startsWith("sb: Filesystem features:") && l.contains("needs_recovery")),
                "read-only: the journal is empty and the superblock says so: " + all);
        assertEquals(List.of(), MountedImage.unexpectedFailures(Files.readString(log)), all);
        Tools.e2fsckClean(image);
        assertEquals("before\n", Tools.debugfs(image, "cat /before.txt"));
        assertEquals("after\nmore\n", Tools.debugfs(image, "cat /after.txt"));
        assertTrue(Tools.debugfs(image, "stat /dir/numbers").contains("Size: 588895"), "seq 1 100000 is 588895 bytes");
    }
}
