package dev.ext4j.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The command line contract: mount returns only once the mount is live (or fails with a reason),
 * the mount table entry, refusals, mount(8) -t fuse.ext4j, umount waiting for the server, the
 * log file, foreground mode, read-only behaviour, and file names that are not UTF-8.
 */
class CliIT extends FuseTestBase {
    private static Path image;
    private static Path src;

    @BeforeAll
    static void buildImage() throws IOException {
        src = scratch.resolve("src");
        Files.createDirectories(src.resolve("dir"));
        Files.writeString(src.resolve("hello.txt"), "hello\n");
        Files.writeString(src.resolve("dir/inner.txt"), "inner\n");
        Tools.run(Duration.ofSeconds(10), "setfattr", "-n", "user.note", "-v", "kept", src.resolve("hello.txt").toString()).requireOk();
        // names as raw bytes: UTF-8 and bytes that are not valid UTF-8 (latin-1 é, a lone continuation byte)
        Tools.bash(Duration.ofSeconds(10), """
                cd "$1"
                mkdir names
                printf 'utf8\\n' > "names/$(printf 'caf\\xc3\\xa9')"
                printf 'latin1\\n' > "names/$(printf 'caf\\xe9')"
                printf 'lone\\n' > "names/$(printf 'x\\x80y')"
                printf 'cjk\\n' > "names/$(printf '\\xe6\\x97\\xa5')"
                """, src.toString()).requireOk();
        image = scratch.resolve("cli.img");
        Tools.mkfs(src, image, "16M", List.of("-T", "default"));
        Tools.e2fsckClean(image);
    }

    private static Path log(String name) {
        return scratch.resolve(name + ".log");
    }

    private static String stderr(MountedImage m) {
        return m.mountResult().stderr();
    }

    @Test
    void mountReturnsOnlyOnceTheMountIsLive() throws IOException {
        Path mnt = newDir("mnt-live");
        try (MountedImage m = MountedImage.attempt(image, mnt, log("live"), null, "ro")) {
            assertTrue(m.mounted(), m.mountResult().describe());
            assertTrue(m.liveOnReturn(), "ext4j mount exited before " + mnt + " was in the mount table");
            // directly after return: no waiting, no retry
            Tools.Result ls = Tools.run(Duration.ofSeconds(10), "ls", mnt.toString());
            assertTrue(ls.ok(), ls.describe());
            assertTrue(ls.stdout().contains("hello.txt"), ls.stdout());
            MountTable.Entry e = m.entryOnReturn().orElseThrow();
            assertEquals("fuse.ext4j", e.fsType(), "filesystem type in the mount table");
            assertEquals(image.toRealPath().toString(), e.source(), "fsname must be the absolute canonical image path");
            assertTrue(e.readOnly(), "the mount must be read-only: " + e.mountOptions());
            assertTrue(Files.readString(Path.of("/proc/mounts")).contains(image.toRealPath() + " " + mnt + " fuse.ext4j "),
                    "/proc/mounts must list '" + image.toRealPath() + " " + mnt + " fuse.ext4j'");
            assertTrue(m.serverAlive(), "no server process found for the mount");
            assertEquals("hello\n", Files.readString(mnt.resolve("hello.txt")));
        }
    }

    @Test
    void fsnameIsTheCanonicalPathEvenForRelativeAndSymlinkedImages() throws IOException {
        Path dir = newDir("odd, path with spaces");
        Path img = dir.resolve("disk,1 x.img");
        Files.copy(image, img);
        Path link = dir.resolve("link.img");
        Files.createSymbolicLink(link, img.getFileName());
        Path mnt = Files.createDirectories(dir.resolve("mount point"));
        // relative image path through a symlink, relative mount point, run from dir
        List<String> cmd = MountedImage.cli("mount", "-o", "ro,log=" + log("relative"), "link.img", "mount point");
        try (MountedImage m = MountedImage.attemptWith(img, mnt, log("relative"), null, dir, cmd)) {
            assertTrue(m.mounted(), m.mountResult().describe());
            MountTable.Entry e = m.entryOnReturn().orElseThrow(() -> new AssertionError("not mounted: " + m.mountResult().describe()));
            assertEquals("fuse.ext4j", e.fsType());
            assertEquals(img.toRealPath().toString(), e.source(), "fsname for a relative, symlinked image path with ',' and ' '");
            assertTrue(Files.exists(mnt.resolve("hello.txt")));
            m.unmount();
            assertTrue(m.cleanlyUnmounted(), "ext4j umount of a mount point with a space: " + m.cleanupNotes());
        }
    }

    @Test
    void aFileThatIsNotExt4IsRefusedWithAReason() throws IOException {
        Path junk = scratch.resolve("random.bin");
        byte[] b = new byte[4 << 20];
        new Random(1).nextBytes(b);
        Files.write(junk, b);
        Path mnt = newDir("mnt-junk");
        try (MountedImage m = MountedImage.attempt(junk, mnt, log("junk"), null, "ro")) {
            assertNotEquals(0, m.mountResult().exitCode(), "mounting random bytes must fail: " + m.mountResult().describe());
            assertFalse(m.mountResult().timedOut(), "mount of random bytes hung");
            assertTrue(stderr(m).toLowerCase().contains("magic"), "the reason should mention the superblock magic: " + stderr(m));
            assertFalse(m.isMounted(), "refused mount left a mount behind");
            assertTrue(MountedImage.findServer(mnt).isEmpty(), "a refused mount left a server process behind");
        }
    }

    @Test
    void missingMountPointOrImageIsRefusedWithAMessage() throws IOException {
        Path mnt = scratch.resolve("no-such-dir");
        try (MountedImage m = MountedImage.attempt(image, mnt, log("nomnt"), null, "ro")) {
            assertNotEquals(0, m.mountResult().exitCode(), m.mountResult().describe());
            assertTrue(stderr(m).contains("no-such-dir"), "the message should name the mount point: " + stderr(m));
        }
        Path mnt2 = newDir("mnt-noimg");
        try (MountedImage m = MountedImage.attempt(scratch.resolve("no-such.img"), mnt2, log("noimg"), null, "ro")) {
            assertNotEquals(0, m.mountResult().exitCode(), m.mountResult().describe());
            assertTrue(stderr(m).contains("no-such.img"), "the message should name the image: " + stderr(m));
            assertFalse(m.isMounted());
        }
        // a regular file as mount point
        Path file = scratch.resolve("a-regular-file");
        Files.writeString(file, "x");
        try (MountedImage m = MountedImage.attempt(image, file, log("filemnt"), null, "ro")) {
            assertNotEquals(0, m.mountResult().exitCode(), m.mountResult().describe());
            assertTrue(stderr(m).contains("a-regular-file"), "the message should name the mount point: " + stderr(m));
        }
    }

    @Test
    void unknownOptionsAndUsageErrors() {
        Tools.Result none = Tools.run(Duration.ofSeconds(30), MountedImage.cli());
        assertNotEquals(0, none.exitCode(), "no arguments must fail");
        assertTrue(none.output().contains("usage"), none.describe());
        Path mnt = newDir("mnt-badopt");
        Tools.Result bad = Tools.run(Duration.ofSeconds(30), MountedImage.cli("mount", "-o", "bogus_option", image.toString(), mnt.toString()));
        assertNotEquals(0, bad.exitCode(), bad.describe());
        assertTrue(bad.stderr().contains("bogus_option"), "the message should name the bad option: " + bad.describe());
        assertFalse(MountTable.isMountPoint(mnt));
        Tools.Result um = Tools.run(Duration.ofSeconds(30), MountedImage.cli("umount", mnt.toString()));
        assertNotEquals(0, um.exitCode(), "umount of a directory that is not mounted must fail: " + um.describe());
        assertFalse(um.stderr().isBlank(), "umount failure without a message");
    }

    @Test
    void doubleMountOnTheSameMountPointIsRefused() {
        Path mnt = newDir("mnt-double");
        try (MountedImage first = MountedImage.mount(image, mnt, log("double-1"), "ro")) {
            try (MountedImage second = MountedImage.attempt(image, mnt, log("double-2"), null, "ro")) {
                assertNotEquals(0, second.mountResult().exitCode(), "second mount on a live mount point must be refused: " + second.mountResult().describe());
                assertFalse(stderr(second).isBlank(), "refusal without a message");
                long mounts = MountTable.entries().stream().filter(e -> e.mountPoint().equals(mnt)).count();
                assertEquals(1, mounts, "mount table entries on " + mnt);
                assertTrue(first.alive(), "the first mount must survive the refused second one");
            }
        }
    }

    /**
     * {@code mount -t fuse.ext4j IMG MNT -o ro}: mount(8) runs /sbin/mount.fuse, which runs
     * {@code ext4j IMG MNT -o OPTS} through /bin/sh. util-linux mount(8) removes PATH from the
     * helper's environment, so the shell only searches its default PATH (/usr/local/sbin,
     * /usr/local/bin, /usr/sbin, ...): a temp dir on the caller's PATH is not enough (checked first,
     * reported, not failed). The real test therefore runs in a private mount namespace where a temp
     * dir holding the {@code ext4j -> bin/ext4j} symlink is bind-mounted over /usr/local/bin (the
     * README's install), and does mount, checks and umount(8) inside that namespace.
     */
    @Test
    void mountTypeFuseExt4jThroughMount8() throws IOException {
        Path bin = newDir("path");
        Files.createSymbolicLink(bin.resolve("ext4j"), Tools.root().resolve("bin/ext4j"));
        Map<String, String> env = new HashMap<>();
        env.put("PATH", bin + ":" + Path.of(Tools.java()).getParent() + ":" + System.getenv("PATH"));

        // 1. as the brief describes it: ext4j only on the PATH given to mount(8)
        Path mnt1 = newDir("mnt-mount8-path");
        List<String> cmd = List.of("mount", "-t", "fuse.ext4j", image.toString(), mnt1.toString(), "-o", "ro,log=" + log("mount8-path"));
        try (MountedImage m = MountedImage.attemptWith(image, mnt1, log("mount8-path"), env, cmd)) {
            if (m.mounted()) {
                assertTrue(m.liveOnReturn(), "mount(8) returned before the mount was live");
                assertEquals("fuse.ext4j", m.entryOnReturn().orElseThrow().fsType());
            } else {
                System.err.println("NOTE: mount -t fuse.ext4j with ext4j only on PATH failed (mount(8) drops PATH for its helpers): "
                        + m.mountResult().output());
            }
        }

        // 2. ext4j installed in /usr/local/bin (private mount namespace), everything checked inside it
        Path mnt = newDir("mnt-mount8");
        String script = """
                set -u
                bin="$1"; img="$2"; mnt="$3"; log="$4"
                mount --bind "$bin" /usr/local/bin || exit 90
                mount -t fuse.ext4j "$img" "$mnt" -o "ro,log=$log"
                rc=$?
                echo "mount-rc=$rc"
                # checked right after mount(8) returned
                grep -F " $mnt fuse.ext4j " /proc/self/mounts | sed 's/^/mounts: /'
                echo "ls: $(ls "$mnt" | tr '\n' ' ')"
                echo "cat: $(cat "$mnt/hello.txt")"
                pid=$(cat "${XDG_RUNTIME_DIR:-/tmp}/ext4j-$(id -un)/$(echo "$mnt" | tr / _).pid" 2>/dev/null || true)
                echo "server-pid=$pid"
                umount "$mnt"; echo "umount-rc=$?"
                for i in $(seq 1 300); do
                    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
                if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "server-alive-after-umount"; else echo "server-gone"; fi
                grep -qF " $mnt " /proc/self/mounts && echo "still-mounted" || echo "unmounted"
                """;
        Tools.Result r = Tools.run(Duration.ofMinutes(3), env, null,
                List.of("unshare", "-m", "--propagation", "private", "bash", "-c", script, "bash", bin.toString(), image.toString(), mnt.toString(),
                        log("mount8").toString()));
        // whatever happened, no server of ours may survive (killing it ends the namespace and its mounts)
        MountedImage.findServer(mnt).ifPresent(Tools::killTree);
        String out = r.stdout();
        String all = r.describe() + "\n--- server log ---\n" + (Files.exists(log("mount8")) ? Files.readString(log("mount8")) : "(none)");
        assertTrue(out.contains("mount-rc=0"), "mount -t fuse.ext4j failed: " + all);
        String canonical = image.toRealPath().toString();
        assertTrue(out.contains("mounts: " + canonical + " " + mnt + " fuse.ext4j ro,"),
                "right after mount(8) returned, /proc/mounts should list '" + canonical + " " + mnt + " fuse.ext4j ro,...': " + all);
        assertTrue(out.contains("ls: dir hello.txt lost+found names"), all);
        assertTrue(out.contains("cat: hello"), all);
        assertTrue(out.contains("umount-rc=0"), "umount(8) failed: " + all);
        assertTrue(out.contains("server-gone"), "the server did not exit after umount(8): " + all);
        assertTrue(out.contains("unmounted"), all);
        assertEquals(List.of(), MountedImage.unexpectedFailures(Files.readString(log("mount8"))));
    }

    @Test
    void umountReturnsAfterTheServerExited() {
        Path mnt = newDir("mnt-umount");
        try (MountedImage m = MountedImage.mount(image, mnt, log("umount"), "ro")) {
            long pid = m.serverPid();
            assertTrue(pid > 0 && m.serverAlive(), "server process not found");
            Tools.Result u = Tools.run(MountedImage.UMOUNT_TIMEOUT, MountedImage.cli("umount", mnt.toString()));
            // checked right after return: no waiting
            boolean alive = ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
            assertTrue(u.ok(), u.describe());
            assertFalse(alive, "ext4j umount returned while the server " + pid + " was still running");
            assertFalse(MountTable.isMountPoint(mnt), "still mounted after ext4j umount");
        }
    }

    /**
     * A killed server leaves its pid file behind, and the pid may name another process by the
     * time someone unmounts the dead mount: ext4j umount must not wait for that process (it
     * waited up to 60 s and then reported it), and drops the stale file.
     */
    @Test
    void umountOfAKilledServersMountIgnoresItsStalePidFile() throws Exception {
        Path mnt = newDir("mnt-stale-pid");
        Process other = null;
        try (MountedImage m = MountedImage.mount(image, mnt, log("stale-pid"), "ro")) {
            ProcessHandle server = ProcessHandle.of(m.serverPid()).orElseThrow();
            String runtime = System.getenv("XDG_RUNTIME_DIR");
            Path pidFile = Path.of(runtime != null && !runtime.isEmpty() ? runtime : "/tmp")
                    .resolve("ext4j-" + System.getProperty("user.name"))
                    .resolve(mnt.toRealPath().toString().replace('/', '_') + ".pid");
            assertEquals(Long.toString(server.pid()), Files.readString(pidFile).trim(), "the server's pid file");
            server.destroyForcibly();
            await("the killed server").atMost(Duration.ofSeconds(30)).until(() -> !server.isAlive());
            // the pid now names a process that started after the server wrote the file
            other = new ProcessBuilder("sleep", "300").start();
            Files.writeString(pidFile, Long.toString(other.pid()));
            Files.setLastModifiedTime(pidFile, java.nio.file.attribute.FileTime.from(java.time.Instant.now().minus(Duration.ofHours(1))));
            Tools.Result u = Tools.run(MountedImage.UMOUNT_TIMEOUT, MountedImage.cli("umount", mnt.toString()));
            assertTrue(u.ok(), u.describe());
            assertFalse(u.describe().contains("did not exit"), u.describe());
            assertTrue(other.isAlive(), "the unrelated process");
            assertFalse(Files.exists(pidFile), "the stale pid file is still there");
            assertFalse(MountTable.isMountPoint(mnt), "still mounted after ext4j umount");
        } finally {
            if (other != null) {
                other.destroyForcibly();
            }
        }
    }

    @Test
    void foregroundModeServesUntilUnmounted() throws Exception {
        Path mnt = newDir("mnt-fg");
        Process p = new ProcessBuilder(MountedImage.cli("mount", "-f", "-o", "ro", image.toString(), mnt.toString()))
                .redirectErrorStream(true).redirectOutput(log("foreground").toFile()).start();
        try {
            await().atMost(Duration.ofSeconds(60)).until(() -> MountTable.isMountPoint(mnt) || !p.isAlive());
            assertTrue(p.isAlive(), "foreground mount exited: " + Files.readString(log("foreground")));
            assertTrue(MountTable.isMountPoint(mnt));
            assertEquals("inner\n", Files.readString(mnt.resolve("dir/inner.txt")));
            Tools.Result u = Tools.run(Duration.ofSeconds(30), "fusermount", "-u", mnt.toString());
            assertTrue(u.ok(), u.describe());
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "foreground mount did not exit after fusermount -u");
            assertEquals(0, p.exitValue(), "foreground exit code; output: " + Files.readString(log("foreground")));
        } finally {
            if (MountTable.isMountPoint(mnt)) {
                Tools.run(Duration.ofSeconds(30), "fusermount", "-u", mnt.toString());
            }
            if (MountTable.isMountPoint(mnt)) {
                Tools.run(Duration.ofSeconds(30), "umount", "-l", mnt.toString());
            }
            Tools.killTree(p.toHandle());
        }
    }

    @Test
    void defaultLogGoesToTheRuntimeDirectory() throws IOException {
        Path runtime = newDir("xdg");
        Path mnt = newDir("mnt-deflog");
        Map<String, String> env = Map.of("XDG_RUNTIME_DIR", runtime.toString());
        try (MountedImage m = MountedImage.attempt(image, mnt, null, env, "ro")) {
            assertTrue(m.mounted(), m.mountResult().describe());
            Files.readString(mnt.resolve("hello.txt"));
        }
        String user = System.getProperty("user.name");
        Path expected = runtime.resolve("ext4j-" + user).resolve(mnt.toString().replace('/', '_') + ".log");
        assertTrue(Files.isRegularFile(expected), "no server log at " + expected + "; runtime dir has: " + listing(runtime));
    }

    private static String listing(Path dir) {
        return Tools.run(Duration.ofSeconds(10), "find", dir.toString()).stdout();
    }

    @Test
    void rwRequestIsHonouredOrReportedAsReadOnly() throws IOException {
        Path mnt = newDir("mnt-rw");
        // a copy: a read-write mount may legitimately change the image
        Path rwImage = scratch.resolve("rw-copy.img");
        Files.copy(image, rwImage, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        try (MountedImage m = MountedImage.attempt(rwImage, mnt, log("rw"), null, "rw")) {
            assertTrue(m.mounted(), "-o rw must mount (read-write, or read-only with a warning): " + m.mountResult().describe());
            MountTable.Entry e = m.entryOnReturn().orElseThrow();
            if (e.readOnly()) {
                assertTrue(stderr(m).contains("read-only"), "an -o rw request mounted read-only must say so on stderr: " + m.mountResult().describe());
            }
        }
    }

    @Test
    void writesFailWithReadOnlyFileSystem() throws IOException {
        String sha = Tools.sha256(image);
        Path mnt = newDir("mnt-ro");
        try (MountedImage m = MountedImage.mount(image, mnt, log("ro"), "ro")) {
            String[][] attempts = {
                {"touch", "new-file"},
                {"touch", "hello.txt"},
                {"mkdir", "newdir"},
                {"rm", "-f", "hello.txt"},
                {"rmdir", "dir"},
                {"setfattr", "-n", "user.x", "-v", "1", "hello.txt"},
                {"setfattr", "-x", "user.note", "hello.txt"},
                {"chmod", "600", "hello.txt"},
                {"chown", "1:1", "hello.txt"},
                {"truncate", "-s", "0", "hello.txt"},
                {"mv", "hello.txt", "moved.txt"},
                {"ln", "hello.txt", "hardlink"},
                {"ln", "-s", "hello.txt", "symlink"},
                {"mkfifo", "fifo"},
                {"sh", "-c", "echo x > hello.txt"},
                {"sh", "-c", "echo x >> hello.txt"},
            };
            List<String> problems = new ArrayList<>();
            for (String[] a : attempts) {
                Tools.Result r = Tools.run(Duration.ofSeconds(20), null, mnt, List.of(a));
                if (r.ok() || !r.stderr().contains("Read-only file system")) {
                    problems.add(String.join(" ", a) + " -> exit " + r.exitCode() + ": " + r.output());
                }
            }
            assertTrue(problems.isEmpty(), "write attempts that did not fail with EROFS:\n  " + String.join("\n  ", problems));
            assertEquals("hello\n", Files.readString(mnt.resolve("hello.txt")));
            assertEquals(List.of("dir", "hello.txt", "lost+found", "names"), Tools.run(Duration.ofSeconds(10), "ls", mnt.toString()).stdout().lines().toList());
            assertTrue(m.alive());
            assertEquals(List.of(), m.unexpectedFailures());
        }
        assertEquals(sha, Tools.sha256(image), "the image changed although every write failed");
    }

    /**
     * Names are bytes: UTF-8 or not, whether the driver runs under a UTF-8 locale or the C locale,
     * every name must round-trip exactly (listing, lookup and reading).
     */
    @Test
    void fileNamesAreBytesWhateverTheLocale() {
        String script = "cd \"$1\" && find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 sha1sum | od -An -c";
        Map<String, String> cLocale = new HashMap<>();
        cLocale.put("LC_ALL", "C");
        cLocale.put("LANG", "C");
        Tools.Result expected = Tools.run(Duration.ofSeconds(30), cLocale, null, List.of("bash", "-c", script, "bash", src.toString())).requireOk();
        List<String> problems = new ArrayList<>();
        for (Map<String, String> env : List.of(Map.of("LC_ALL", "C.UTF-8", "LANG", "C.UTF-8"), cLocale)) {
            Path mnt = newDir("mnt-names");
            try (MountedImage m = MountedImage.attempt(image, mnt, log("names-" + env.get("LC_ALL")), env, "ro")) {
                assertTrue(m.mounted(), m.mountResult().describe());
                Tools.Result actual = Tools.run(Duration.ofSeconds(30), cLocale, null, List.of("bash", "-c", script, "bash", mnt.toString()));
                if (!expected.stdout().equals(actual.stdout())) {
                    Tools.Result ls = Tools.run(Duration.ofSeconds(30), cLocale, null, List.of("ls", "-b", mnt.resolve("names").toString()));
                    problems.add("driver under LC_ALL=" + env.get("LC_ALL") + ": ls -b names/ shows " + ls.stdout().strip().replace('\n', ' ')
                            + "; reading them: " + actual.stderr().strip());
                }
                assertEquals(List.of(), m.unexpectedFailures());
            }
        }
        assertTrue(problems.isEmpty(), "names that are not plain ASCII do not round-trip (expected names/ to hold "
                + "caf\\303\\251, caf\\351, x\\200y, \\346\\227\\245):\n  " + String.join("\n  ", problems));
    }
}
