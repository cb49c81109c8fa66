package dev.ext4j.fs;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/** {@link Ext4FileSystem#remount}: read-only with everything home, and back, on real images checked by e2fsck. */
class RemountTest {
    @TempDir
    Path work;

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String read(Ext4FileSystem fs, long ino) throws Ext4Exception {
        byte[] out = new byte[(int) fs.stat(ino).size()];
        fs.read(ino, 0, ByteBuffer.wrap(out));
        return new String(out, StandardCharsets.UTF_8);
    }

    private static String sha(Path img) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(img)));
    }

    private static void assertErofs(Executable change) {
        assertEquals(Errno.EROFS, assertThrows(Ext4Exception.class, change).errno());
    }

    @Test
    void readOnlyWritesEverythingHomeRefusesChangesAndGoesBack() throws Exception {
        Path img = Images.mkfs(work.resolve("r.img"), "32M", List.of("-b", "4096"), null);
        // a flusher that would write every 50 ms if it were allowed to
        MountOptions opts = MountOptions.defaults().withWriteback(16 << 20, 50, 50).withIdleFlush(20);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, opts)) {
            long a = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("a"), 0100644, 0, 0, 0, 0);
            fs.open(a); // stays open across both remounts
            fs.write(a, 0, ByteBuffer.wrap(bytes("before\n")));
            fs.setXattr(a, "user.k", bytes("v"), 0);

            fs.remount(true);
            assertTrue(fs.isReadOnly());
            assertEquals("remounted read-only", fs.status().readOnlyWhy());
            assertTrue(fs.statfs(false).readOnly());
            // the image is a clean filesystem while mounted: data, metadata and a clean superblock home
            Images.assertClean(img);
            Map<String, String> sb = Images.dumpe2fsHeader(img);
            assertEquals("clean", sb.get("Filesystem state"));
            assertFalse(sb.get("Filesystem features").contains("needs_recovery"), sb.get("Filesystem features"));
            assertTrue(Images.debugfsRead(img, "cat /a").contains("before"));

            assertErofs(() -> fs.write(a, 7, ByteBuffer.wrap(bytes("x"))));
            assertErofs(() -> fs.mknod(Ext4FileSystem.ROOT_INO, bytes("b"), 0100644, 0, 0, 0, 0));
            assertErofs(() -> fs.setAttributes(a, 0600, null, null, null, null));
            assertErofs(() -> fs.setXattr(a, "user.k2", bytes("v"), 0));
            assertErofs(() -> fs.truncate(a, 0));
            assertErofs(() -> fs.unlink(Ext4FileSystem.ROOT_INO, bytes("a")));
            assertErofs(fs::freeze);
            // reads go on, move no atime, and nothing reaches the image: no writeback, commit or idle flush
            String home = sha(img);
            assertEquals("before\n", read(fs, a));
            fs.readdir(Ext4FileSystem.ROOT_INO, 0, (name, ino, type, next) -> true);
            fs.sync();
            fs.fsync(a, false);
            fs.statfs(false);
            fs.remount(true); // read-only already: nothing to do
            await().during(Duration.ofMillis(300)).atMost(Duration.ofSeconds(5)).until(() -> sha(img).equals(home));

            fs.remount(false);
            assertFalse(fs.isReadOnly());
            assertNull(fs.status().readOnlyWhy());
            sb = Images.dumpe2fsHeader(img);
            assertEquals("not clean", sb.get("Filesystem state"), "in use again");
            assertTrue(sb.get("Filesystem features").contains("needs_recovery"), sb.get("Filesystem features"));
            fs.write(a, 7, ByteBuffer.wrap(bytes("after\n")));
            long b = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("b"), 0100644, 0, 0, 0, 0);
            fs.write(b, 0, ByteBuffer.wrap(bytes("second\n")));
            fs.release(a);
        }
        Images.assertClean(img);
        assertTrue(Images.debugfsRead(img, "cat /a").contains("before\nafter"));
        assertTrue(Images.debugfsRead(img, "cat /b").contains("second"));
    }

    @Test
    void refusals() throws Exception {
        Path img = Images.mkfs(work.resolve("f.img"), "32M", List.of("-b", "4096"), null);
        String home;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            fs.freeze();
            assertEquals(Errno.EBUSY, assertThrows(Ext4Exception.class, () -> fs.remount(true)).errno(), "frozen");
            fs.thaw();
            // a file whose last name went while it is open: its last close frees it
            long gone = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("gone"), 0100644, 0, 0, 0, 0);
            fs.open(gone);
            fs.unlink(Ext4FileSystem.ROOT_INO, bytes("gone"));
            assertEquals(Errno.EBUSY, assertThrows(Ext4Exception.class, () -> fs.remount(true)).errno(), "unlinked and open");
            assertFalse(fs.isReadOnly(), "a refused remount changes nothing");
            long c = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("c"), 0100644, 0, 0, 0, 0);
            fs.release(gone);
            fs.remount(true);
            fs.remount(false);
            fs.write(c, 0, ByteBuffer.wrap(bytes("c\n")));
            fs.remount(true); // and unmounted read-only: everything was home already
            home = sha(img);
        }
        assertEquals(home, sha(img), "an unmount after remount,ro writes nothing");
        Images.assertClean(img);
        assertTrue(Images.debugfsRead(img, "cat /c").contains("c"));

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            fs.remount(true); // read-only already
            Ext4Exception e = assertThrows(Ext4Exception.class, () -> fs.remount(false));
            assertEquals(Errno.EROFS, e.errno());
            assertTrue(e.getMessage().contains("opened read-only"), e.getMessage());
        }

        Path bad = Images.mkfs(work.resolve("e.img"), "32M", List.of("-b", "4096"), null);
        try (Ext4FileSystem fs = Ext4FileSystem.open(bad, MountOptions.defaults().withErrors(ErrorPolicy.REMOUNT_RO))) {
            long f = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("f"), 0100644, 0, 0, 0, 0);
            fs.write(f, 0, ByteBuffer.wrap(bytes("dirty\n"))); // in the page cache: an error-ro mount cannot write it back
            fs.recordError("test", new Ext4Exception(Errno.EUCLEAN, "a made-up corruption"));
            assertTrue(fs.status().readOnlyWhy().startsWith("read-only since an error"), fs.status().readOnlyWhy());
            fs.remount(true); // read-only already
            Ext4Exception e = assertThrows(Ext4Exception.class, () -> fs.remount(false));
            assertEquals(Errno.EROFS, e.errno(), "read-only since an error: the kernel refuses too");
            assertTrue(e.getMessage().contains("made-up corruption"), e.getMessage());
        }
        // (bad.img records the made-up error, which e2fsck reports; its structure is not checked here)
        assertTrue(Arrays.asList(Images.dumpe2fs(bad).split("\n")).stream().anyMatch(l -> l.startsWith("FS Error count:")));
    }
}
