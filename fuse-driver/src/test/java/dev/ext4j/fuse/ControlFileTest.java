package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.MountOptions;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The control file against a real filesystem on an image made by mkfs.ext4: command parsing and
 * dispatch, the {@code ok ...} / {@code error ERRNO: message} replies and the {@code -errno} of
 * a failed write, one reply per open file read as a stream, and who may open it. Each image is
 * checked with {@code e2fsck -fn} after the filesystem is closed.
 */
class ControlFileTest {
    private static final long OWNER_UID = 1000, OWNER_GID = 1000;
    private static final Path MOUNT_POINT = Path.of("/mnt/ext4j-test");

    @TempDir
    Path dir;
    private Path img;
    private Ext4FileSystem fs;
    private ControlFile control;

    /** A 16 MiB ext4 image of 4 KiB blocks (4096 blocks), opened with {@code options}. */
    private void open(MountOptions options) throws Ext4Exception {
        img = TestImages.mkfs(dir.resolve("disk.img"), "16M", List.of("-b", "4096"), null);
        open(img, options);
    }

    private void open(Path image, MountOptions options) throws Ext4Exception {
        img = image;
        fs = Ext4FileSystem.open(image, options);
        control = new ControlFile(fs, ".ext4j-control", MOUNT_POINT, OWNER_UID, OWNER_GID);
    }

    @AfterEach
    void closeAndCheck() throws IOException {
        if (fs != null) {
            fs.close();
            TestImages.assertClean(img);
        }
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.ISO_8859_1);
    }

    /** Writes {@code command} on {@code fh} and returns the whole reply, read 7 bytes at a time. */
    private String command(long fh, String command) {
        byte[] data = bytes(command);
        int n = control.write(fh, data);
        String reply = readAll(fh);
        if (reply.startsWith("ok ")) {
            assertEquals(data.length, n, "a write that succeeds returns its length");
        } else {
            assertEquals(-Errno.valueOf(reply.substring(6, reply.indexOf(':'))).value(), n, "a failed write returns -errno: " + reply);
        }
        return reply;
    }

    private String readAll(long fh) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] b = control.read(fh, 7); b.length > 0; b = control.read(fh, 7)) {
            assertTrue(b.length <= 7);
            out.writeBytes(b);
        }
        return out.toString(StandardCharsets.ISO_8859_1);
    }

    private long openAsOwner() throws Ext4Exception {
        return control.open(OWNER_UID);
    }

    @Test
    void statusBeforeAnyCommandAndAsACommand() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        String status = readAll(fh);
        assertTrue(status.startsWith("ok status\nsize: 16777216\nblock_size: 4096\nblocks: 4096\n"), status);
        assertTrue(status.contains("\nfrozen: no\n"), status);
        assertTrue(status.contains("\nerrors: 0\n"), status);
        assertTrue(status.contains("\nfeatures: ") && status.contains(" extent "), status);
        assertTrue(status.endsWith("\nread_only: no\n"), status);
        assertEquals("", new String(control.read(fh, 100), StandardCharsets.ISO_8859_1), "end of file after the reply");
        assertEquals(status, command(fh, "status\n"));
        assertEquals(status, command(fh, "  STATUS  "), "case and surrounding blanks do not matter");
    }

    @Test
    void theReplyIsAStreamAndANewCommandStartsANewOne() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        assertEquals(0, control.write(fh, bytes("sync\n")) - 5);
        assertArrayEquals(bytes("ok "), control.read(fh, 3));
        assertArrayEquals(bytes("synced\n"), control.read(fh, 4096));
        assertArrayEquals(new byte[0], control.read(fh, 4096));
        assertArrayEquals(new byte[0], control.read(fh, 4096), "end of file stays end of file");
        assertEquals("ok synced\n", command(fh, "sync"));
    }

    @Test
    void eachOpenFileHasItsOwnReply() throws Exception {
        open(MountOptions.defaults());
        long a = openAsOwner();
        long b = control.open(0);
        assertNotEquals(a, b);
        assertTrue(control.owns(a) && control.owns(b));
        assertFalse(control.owns(Ext4FileSystem.ROOT_INO));
        control.write(a, bytes("sync\n"));
        control.write(b, bytes("nonsense\n"));
        assertEquals("ok synced\n", readAll(a));
        assertTrue(readAll(b).startsWith("error EINVAL: unknown command \"nonsense\""));
        control.release(a);
        assertTrue(readAll(a).startsWith("ok status\n"), "a released handle has no reply left");
    }

    @Test
    void onlyTheMountingUserAndRootMayOpenIt() throws Exception {
        open(MountOptions.defaults());
        control.open(OWNER_UID);
        control.open(0);
        Ext4Exception e = assertThrows(Ext4Exception.class, () -> control.open(OWNER_UID + 1));
        assertEquals(Errno.EACCES, e.errno());
        assertEquals("the control file is only for the user that mounted (uid 1000)", e.getMessage());
    }

    @Test
    void itsNameIsAtTheRootOnly() throws Exception {
        open(MountOptions.defaults());
        assertTrue(control.is("/.ext4j-control"));
        assertFalse(control.is("/d/.ext4j-control"));
        assertFalse(control.is(".ext4j-control"));
        assertTrue(control.isName(Ext4FileSystem.ROOT_INO, bytes(".ext4j-control")));
        assertFalse(control.isName(11, bytes(".ext4j-control")));
        assertFalse(control.isName(Ext4FileSystem.ROOT_INO, bytes(".ext4j-contro")));
        assertEquals(OWNER_UID, control.ownerUid());
        assertEquals(OWNER_GID, control.ownerGid());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "frobnicate       | error EINVAL: unknown command \"frobnicate\" (commands: resize SIZE, freeze, thaw, migrate PATH, mknod PATH b/c MAJOR MINOR [MODE], sync, remount ro or rw, status)",
            "resize           | error EINVAL: resize needs an argument",
            "migrate          | error EINVAL: migrate needs an argument",
            "sync now         | error EINVAL: sync takes no argument",
            "freeze please    | error EINVAL: freeze takes no argument",
            "remount          | error EINVAL: remount needs an argument",
            "remount rx       | error EINVAL: remount takes ro or rw",
            "resize 12Q       | error EINVAL: size \"12Q\" is not a number of blocks or of bytes with K, M, G or T",
            "resize 1.5G      | error EINVAL: size \"1.5G\" is not a number of blocks or of bytes with K, M, G or T",
            "resize -5        | error EINVAL: size \"-5\" is not a number of blocks or of bytes with K, M, G or T",
            "resize 0         | error EINVAL: size \"0\" is out of range",
            "resize 99999999T | error EINVAL: size \"99999999T\" is not a number of blocks or of bytes with K, M, G or T",
            "thaw             | error EINVAL: the filesystem is not frozen",
    })
    void malformedCommandsAreEinvalAndChangeNothing(String line, String reply) throws Exception {
        open(MountOptions.defaults());
        assertEquals(reply + "\n", command(openAsOwner(), line + "\n"));
        assertEquals(4096, fs.superblock().blocksCount());
        assertFalse(fs.isFrozen());
    }

    @Test
    void mknodMakesDeviceNodesForRootAndTheOwnerOfAFakerootMount() throws Exception {
        open(MountOptions.defaults());
        long dev = fs.mkdir(Ext4FileSystem.ROOT_INO, bytes("dev"), 0755, 0, 0);
        long fh = openAsOwner();
        try {
            assertEquals("ok made /dev/null\n", command(fh, "mknod /dev/null c 1 3 0666\n"), "root may");
            Caller.fromRequest(() -> new long[] {OWNER_UID, OWNER_GID}, OWNER_UID);
            assertEquals("ok made " + MOUNT_POINT + "/dev/sda\n", command(fh, "mknod " + MOUNT_POINT + "/dev/sda b 8 0\n"),
                    "the owner of a fakeroot mount may");
            Caller.fromRequest(() -> new long[] {OWNER_UID, OWNER_GID});
            assertTrue(command(fh, "mknod /dev/zero c 1 5\n").startsWith("error EPERM: mknod needs root"), "the owner alone may not");
        } finally {
            Caller.set(0, 0);
        }
        FileAttributes nul = fs.stat(fs.resolve(bytes("/dev/null")));
        assertEquals(Inode.S_IFCHR | 0666, nul.mode());
        assertEquals(List.of(1, 3, 0L, 0L), List.of(nul.rdevMajor(), nul.rdevMinor(), nul.uid(), nul.gid()));
        FileAttributes sda = fs.stat(fs.resolve(bytes("/dev/sda")));
        assertEquals(Inode.S_IFBLK | 0600, sda.mode());
        assertEquals(List.of(8, 0, 0L, 0L), List.of(sda.rdevMajor(), sda.rdevMinor(), sda.uid(), sda.gid()));
        assertEquals(0, fs.resolveOrZero(bytes("/dev/zero")));
        assertTrue(dev > 0);
    }

    @ParameterizedTest
    @ValueSource(strings = {"mknod /x q 1 2", "mknod /x c 1", "mknod /x c 1 2 3 4", "mknod /x c one 2", "mknod /x b 1 2 0999",
            "mknod /x c 4096 0", "mknod / c 1 2"})
    void malformedMknodIsEinval(String line) throws Exception {
        open(MountOptions.defaults());
        assertTrue(command(openAsOwner(), line + "\n").startsWith("error EINVAL: "), line);
    }

    @Test
    void theCommandsAfterAFailedOneAreNotRun() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        assertEquals(-Errno.EINVAL.value(), control.write(fh, bytes("sync\nbogus\nfreeze\n")));
        assertFalse(fs.isFrozen());
        assertTrue(readAll(fh).startsWith("error EINVAL: unknown command \"bogus\""));
        assertEquals(8, control.write(fh, bytes("\n\nsync\n\n")), "blank lines are skipped");
    }

    @ParameterizedTest
    @CsvSource({"8192, 8192", "32M, 8192", "32m, 8192", "33554431, 33554431", "1G, 262144", "40959K, 10239"})
    void sizesAreBlocksOrBytesRoundedDown(String text, long blocks) throws Ext4Exception {
        assertEquals(blocks, ControlFile.parseSize(text, 4096));
    }

    @Test
    void resizeGrowsTheImage() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        assertEquals("ok resized to 8192 blocks\n", command(fh, "resize 32M\n"));
        assertEquals("ok resized to 10000 blocks\n", command(fh, "resize 10000"));
        assertTrue(command(fh, "resize 9000").startsWith("error EINVAL: "), "shrinking");
        assertEquals(10000, fs.status().blocks());
        fs.close();
        fs = null;
        assertEquals(10000L * 4096, Files.size(img));
        TestImages.assertClean(img);
    }

    @Test
    void freezeAndThaw() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        assertEquals("ok frozen\n", command(fh, "freeze"));
        assertTrue(fs.isFrozen());
        assertTrue(command(fh, "status").contains("\nfrozen: yes\n"));
        assertTrue(command(fh, "freeze").startsWith("error EBUSY: "));
        TestImages.assertClean(img); // what freeze is for: the image is consistent while frozen
        assertEquals("ok thawed\n", command(fh, "thaw"));
        assertFalse(fs.isFrozen());
    }

    @Test
    void remountReadOnlyAndBack() throws Exception {
        open(MountOptions.defaults());
        long fh = openAsOwner();
        assertEquals("ok remounted read-only\n", command(fh, "remount ro"));
        assertTrue(command(fh, "status").contains("\nread_only: yes (remounted read-only)\n"));
        assertEquals("error EROFS: the filesystem is mounted read-only\n", command(fh, "freeze"));
        TestImages.assertClean(img); // everything is home while read-only
        assertEquals("ok remounted read-write\n", command(fh, "remount rw"));
        assertTrue(command(fh, "status").contains("\nread_only: no\n"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"freeze", "thaw", "resize 32M", "migrate /f"})
    void changesOnAReadOnlyMountAreErofs(String line) throws Exception {
        img = TestImages.mkfs(dir.resolve("disk.img"), "16M", List.of("-b", "4096"), null);
        open(img, MountOptions.defaults().withReadOnly(true));
        long fh = openAsOwner();
        assertEquals("error EROFS: the filesystem is mounted read-only\n", command(fh, line));
        assertEquals("ok synced\n", command(fh, "sync"));
        assertTrue(command(fh, "status").contains("\nread_only: yes ("));
        assertTrue(command(fh, "remount rw").startsWith("error EROFS: the image was opened read-only"));
    }

    /** An ext3 image (block-mapped files) given the extent feature, as ext4-core's migrate tests make it. */
    private void openExt3WithExtents() throws Exception {
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.write(src.resolve("f"), new byte[40_000]);
        Files.createDirectories(src.resolve("sub dir"));
        Files.write(src.resolve("sub dir").resolve("g"), new byte[5000]);
        Path image = TestImages.mkfs(dir.resolve("ext3.img"), "16M", List.of("-t", "ext3", "-b", "1024"), src);
        TestImages.runOk(List.of("tune2fs", "-O", "extents", image.toString()));
        open(image, MountOptions.defaults());
    }

    private boolean hasExtents(String path) throws Ext4Exception {
        return (fs.getFlags(fs.resolve(bytes(path))) & Inode.EXTENTS_FL) != 0;
    }

    @Test
    void migrateTakesAPathUnderTheMountPointOrRelativeToTheRoot() throws Exception {
        openExt3WithExtents();
        long fh = openAsOwner();
        assertFalse(hasExtents("/f"));
        assertEquals("ok migrated " + MOUNT_POINT + "/f\n", command(fh, "migrate " + MOUNT_POINT + "/f\n"));
        assertTrue(hasExtents("/f"));
        assertEquals("ok migrated sub dir/g\n", command(fh, "migrate sub dir/g"), "the rest of the line is the path");
        assertTrue(hasExtents("/sub dir/g"));
        assertTrue(command(fh, "migrate /f").startsWith("error EINVAL: "), "extent-mapped already");
        assertTrue(command(fh, "migrate /nothing").startsWith("error ENOENT: "));
    }
}
