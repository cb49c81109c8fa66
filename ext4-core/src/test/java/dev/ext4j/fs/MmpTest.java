package dev.ext4j.fs;

import static dev.ext4j.testutil.FsUtil.bytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.MmpBlock;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.MemoryBlockDevice;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Multi-mount protection's policy ({@link Mmp}) on an image mkfs.ext4 made with {@code -O mmp},
 * held in memory, with a clock that does not sleep: which blocks the mount check takes at once,
 * which after how long a wait, which it refuses, and what the update rounds, freeze and unmount do
 * to the block. Another node is played by writes into the block while the check "sleeps".
 */
class MmpTest {
    private static final String NODE = "node-a";
    private static final String DEVICE = "/images/shared.img";

    @TempDir
    Path work;
    private Path img;
    private byte[] image;
    private MemoryBlockDevice dev;
    private Superblock sb;
    private FakeClock clock;

    /** Time that moves only when the check sleeps; each sleep runs the next planned action of "the other node". */
    private static final class FakeClock implements Mmp.Clock {
        long millis = 1_000_000;
        final List<Long> sleeps = new ArrayList<>();
        final List<Runnable> duringSleep = new ArrayList<>();

        @Override
        public long millis() {
            return millis;
        }

        @Override
        public long epochSeconds() {
            return 1_700_000_000L + millis / 1000;
        }

        @Override
        public void sleep(long ms) {
            sleeps.add(ms);
            millis += ms;
            if (!duringSleep.isEmpty()) {
                duringSleep.remove(0).run();
            }
        }
    }

    @BeforeEach
    void image() throws Exception {
        img = Images.mkfs(work.resolve("mmp.img"), "32M", List.of("-O", "mmp", "-E", "mmp_update_interval=1"), null);
        image = Files.readAllBytes(img);
        dev = new MemoryBlockDevice(image, false);
        sb = Mount.readSuperblock(dev);
        clock = new FakeClock();
    }

    private MmpBlock block() {
        return MmpBlock.of(ByteBuffer.wrap(image, (int) (sb.mmpBlock() * sb.blockSize()), sb.blockSize()).slice());
    }

    /** Another node (or e2fsck) changes the block, checksum and all. */
    private void otherNode(Consumer<MmpBlock> change) {
        MmpBlock b = block();
        change.accept(b);
        b.updateChecksum(sb.checksumSeed());
    }

    private void heldBy(String node, int seq) {
        otherNode(b -> {
            b.setSeq(seq);
            b.setNodeName(node);
            b.setDeviceName("/dev/sdb");
        });
    }

    private Mmp protect() throws Ext4Exception {
        return Mmp.protect(dev, sb, DEVICE, NODE, clock);
    }

    private byte[] mmpBytes() {
        int bs = sb.blockSize();
        byte[] b = new byte[bs];
        System.arraycopy(image, (int) (sb.mmpBlock() * bs), b, 0, bs);
        return b;
    }

    @Test
    void aCleanBlockIsTakenAtOnceAndReleasedAtUnmount() throws Exception {
        Mmp mmp = protect();
        assertEquals(List.of(), clock.sleeps, "a CLEAN block costs no wait, as in ext4_multi_mount_protect()");
        MmpBlock b = block();
        assertEquals(mmp.seq(), b.seq());
        assertTrue(Integer.compareUnsigned(b.seq(), MmpBlock.SEQ_MAX) <= 0, "a holder's sequence is at most SEQ_MAX");
        assertEquals(NODE, b.nodeName());
        assertEquals(DEVICE, b.deviceName());
        assertEquals(5, b.checkInterval(), "twice the update interval of 1 s, at least 5");
        assertEquals(b.computeChecksum(sb.checksumSeed()), b.storedChecksum());

        clock.millis += 1000;
        mmp.round();
        assertEquals(mmp.seq(), block().seq());
        clock.millis += 100_000; // a late round: the next checker waits longer
        int before = mmp.seq();
        mmp.round();
        assertEquals(before + 1, block().seq());
        assertEquals(200, block().checkInterval());
        assertEquals(block().computeChecksum(sb.checksumSeed()), block().storedChecksum());

        mmp.stop();
        assertEquals(MmpBlock.SEQ_CLEAN, block().seq());
        assertEquals(NODE, block().nodeName());
        Files.write(img, image);
        Images.assertClean(img);
    }

    @Test
    void e2fsckRunningRefusesAtOnceWithoutTouchingTheBlock() {
        otherNode(b -> b.setSeq(MmpBlock.SEQ_FSCK));
        byte[] before = mmpBytes();
        Ext4Exception e = assertThrows(Ext4Exception.class, this::protect);
        assertEquals(Errno.EBUSY, e.errno());
        assertTrue(e.getMessage().contains("e2fsck is running"), e.getMessage());
        assertEquals(List.of(), clock.sleeps);
        assertArrayEquals(before, mmpBytes());
    }

    @Test
    void aHeldBlockThatStaysStillIsTakenAfterWatchingIt() throws Exception {
        heldBy("crashed-node", 1234);
        Mmp mmp = protect();
        // c = max(s_mmp_update_interval 1, 5, the block's 5) = 5: 2c + 1 = 11 s before and after our write
        assertEquals(List.of(11_000L, 11_000L), clock.sleeps);
        assertEquals(mmp.seq(), block().seq());
        assertEquals(NODE, block().nodeName());
    }

    @Test
    void theBlocksLongerCheckIntervalIsWaitedForCappedAtAMinuteMore() throws Exception {
        otherNode(b -> {
            b.setSeq(77);
            b.setCheckInterval(100);
        });
        protect();
        assertEquals(List.of(160_000L, 160_000L), clock.sleeps, "min(2 * 100 + 1, 100 + 60) s");
        assertEquals(11, Mmp.waitSeconds(5));
    }

    @Test
    void aLiveHolderRefusesTheMountNamingItsNodeAndDevice() {
        heldBy("node-b", 500);
        clock.duringSleep.add(() -> heldBy("node-b", 501));
        Ext4Exception e = assertThrows(Ext4Exception.class, this::protect);
        assertEquals(Errno.EBUSY, e.errno());
        assertTrue(e.getMessage().contains("in use on node \"node-b\", device \"/dev/sdb\""), e.getMessage());
        assertEquals(List.of(11_000L), clock.sleeps);
        assertEquals(501, block().seq(), "the block stays the holder's");
        assertEquals("node-b", block().nodeName());
    }

    @Test
    void aNodeThatWritesWhileWeCheckOurWriteWins() {
        heldBy("crashed-node", 9);
        clock.duringSleep.add(() -> { });
        clock.duringSleep.add(() -> heldBy("node-c", 4242));
        Ext4Exception e = assertThrows(Ext4Exception.class, this::protect);
        assertEquals(Errno.EBUSY, e.errno());
        assertTrue(e.getMessage().contains("node-c"), e.getMessage());
        assertEquals(4242, block().seq());
    }

    @Test
    void aForeignSequenceWhileMountedIsFatalAndTheBlockIsLeftAlone() throws Exception {
        Mmp mmp = protect();
        heldBy("node-b", mmp.seq() + 5);
        byte[] foreign = mmpBytes();
        Ext4Exception e = assertThrows(Ext4Exception.class, mmp::round);
        assertEquals(Errno.EBUSY, e.errno());
        assertTrue(e.getMessage().contains("node-b"), e.getMessage());
        assertTrue(mmp.failed());
        mmp.round(); // no more writes once failed
        mmp.stop(); // and no CLEAN: the block is another node's
        assertArrayEquals(foreign, mmpBytes());
    }

    @Test
    void theSameSequenceFromAnotherNodeIsForeignToo() throws Exception {
        Mmp mmp = protect();
        int seq = mmp.seq();
        otherNode(b -> b.setNodeName("node-b"));
        assertEquals(seq, block().seq());
        assertThrows(Ext4Exception.class, mmp::round);
        assertTrue(mmp.failed());
    }

    @Test
    void anUnreadableBlockWhileMountedIsFatal() throws Exception {
        Mmp mmp = protect();
        otherNode(b -> { });
        block().setTime(1); // the checksum no longer matches
        Ext4Exception e = assertThrows(Ext4Exception.class, mmp::round);
        assertEquals(Errno.EBADMSG, e.errno());
        assertTrue(mmp.failed());
    }

    @Test
    void aFrozenMountWritesNothingUntilThawed() throws Exception {
        Mmp mmp = protect();
        int seq = mmp.seq();
        mmp.pause();
        byte[] frozen = mmpBytes();
        clock.millis += 5000;
        mmp.round();
        assertArrayEquals(frozen, mmpBytes());
        mmp.resume();
        clock.millis += 1000;
        mmp.round();
        assertEquals(seq + 1, block().seq());
        assertEquals(5, block().checkInterval(), "the time since the last round, paused or not, sets the interval");
    }

    @Test
    void aBadBlockRefusesTheMount() {
        otherNode(b -> b.setTime(5));
        block().setTime(6);
        assertEquals(Errno.EBADMSG, assertThrows(Ext4Exception.class, this::protect).errno());
        int at = (int) (sb.mmpBlock() * sb.blockSize());
        image[at] ^= 1; // the magic
        assertEquals(Errno.EUCLEAN, assertThrows(Ext4Exception.class, this::protect).errno());
        assertEquals(List.of(), clock.sleeps);
    }

    // ---- through the mount ----

    /** e2fsprogs' own damaged MMP blocks (tests m_mmp_bad_csum, m_mmp_bad_magic): a read-write mount refuses them untouched. */
    @Test
    void e2fsprogsDamagedBlocksRefuseAReadWriteMountButNotAReadOnlyOne() throws Exception {
        for (var c : List.of(new Object[] {"m_mmp_bad_csum", Errno.EBADMSG}, new Object[] {"m_mmp_bad_magic", Errno.EUCLEAN})) {
            Path corpus = Path.of("/work/shared/corpus/e2fsprogs-tests", (String) c[0], "image.gz");
            Path damaged = work.resolve(c[0] + ".img");
            Images.runOk(List.of("sh", "-c", "gzip -dc '" + corpus + "' > '" + damaged + "'"));
            String before = Images.sha256(damaged);
            Ext4Exception e = assertThrows(Ext4Exception.class, () -> Ext4FileSystem.open(damaged, MountOptions.defaults()).close());
            assertEquals(c[1], e.errno(), c[0] + ": " + e.getMessage());
            assertTrue(e.getMessage().contains("MMP block 8"), e.getMessage());
            try (Ext4FileSystem fs = Ext4FileSystem.open(damaged, MountOptions.defaults().withReadOnly(true))) {
                assertTrue(fs.isReadOnly());
            }
            assertEquals(before, Images.sha256(damaged), c[0] + " unchanged");
        }
    }

    @Test
    void aReadWriteMountHoldsTheBlockAndReleasesItClean() throws Exception {
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly());
            MmpBlock b = block();
            assertNotEquals(MmpBlock.SEQ_CLEAN, b.seq());
            assertEquals(Mmp.hostName(), b.nodeName());
            assertEquals("MemoryBlockDevice", b.deviceName());
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("f"), 0100644, 0, 0, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(bytes("written under MMP\n")));
        }
        assertEquals(MmpBlock.SEQ_CLEAN, block().seq());
        Files.write(img, image);
        Images.assertClean(img);
    }

    /** An image whose update interval (300 s) keeps the timer's rounds out of the way: the test runs them. */
    private void slowImage() throws Exception {
        img = Images.mkfs(work.resolve("slow.img"), "32M", List.of("-O", "mmp", "-E", "mmp_update_interval=300"), null);
        image = Files.readAllBytes(img);
        dev = new MemoryBlockDevice(image, false);
        sb = Mount.readSuperblock(dev);
    }

    @Test
    void anotherHolderWhileMountedMakesTheMountRefuseChangesAndWriteNothingMore() throws Exception {
        slowImage();
        byte[] after;
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults().withErrors(ErrorPolicy.CONTINUE))) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("f"), 0100644, 0, 0, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(bytes("dirty pages and an uncommitted transaction")));
            heldBy("node-b", fs.sbi().mmp.seq() + 1);
            after = image.clone();
            fs.sbi().mmp.tick();
            Ext4Exception e = assertThrows(Ext4Exception.class, () -> fs.write(ino, 0, ByteBuffer.wrap(bytes("x"))));
            assertEquals(Errno.EROFS, e.errno(), "even with errors=continue: another node may be writing the image");
            assertTrue(e.getMessage().contains("node-b"), e.getMessage());
            assertTrue(fs.status().errorCount() > 0, "the error is counted");
            assertThrows(Ext4Exception.class, fs::sync, "nothing can be committed");
        }
        assertArrayEquals(after, image, "from the moment the block was lost nothing was written, at unmount neither");
    }

    @Test
    void aThawFindsTheBlockTakenWhileFrozenAndWritesNothing() throws Exception {
        slowImage();
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults())) {
            long ino = fs.mknod(Ext4FileSystem.ROOT_INO, bytes("f"), 0100644, 0, 0, 0, 0);
            fs.freeze();
            byte[] frozen = image.clone();
            fs.sbi().mmp.tick();
            assertArrayEquals(frozen, image, "no rounds while frozen");
            heldBy("node-b", 99); // another node found the block still and took it
            byte[] taken = image.clone();
            fs.thaw();
            assertEquals(Errno.EROFS, assertThrows(Ext4Exception.class, () -> fs.write(ino, 0, ByteBuffer.wrap(bytes("x")))).errno());
            assertArrayEquals(taken, image, "the thaw did not mark the image in use: it is not ours");
        }
    }

    @Test
    void aThawResumesTheRounds() throws Exception {
        slowImage();
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults())) {
            fs.freeze();
            int seq = block().seq();
            fs.thaw();
            assertEquals(seq + 1, block().seq(), "a round at once");
            fs.sbi().mmp.tick();
            assertEquals(seq + 2, block().seq());
        }
        assertEquals(MmpBlock.SEQ_CLEAN, block().seq());
        Files.write(img, image);
        Images.assertClean(img);
    }

    @Test
    void aReadOnlyMountLeavesAHeldBlockAloneAndDoesNotWait() throws Exception {
        heldBy("node-b", 31337);
        byte[] before = image.clone();
        try (Ext4FileSystem fs = Ext4FileSystem.mount(dev, MountOptions.defaults().withReadOnly(true))) {
            assertTrue(fs.isReadOnly());
        }
        assertArrayEquals(before, image);
    }
}
