package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Feature;
import dev.ext4j.format.MmpBlock;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.ForwardingDevice;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * Multi-mount protection (the kernel's fs/ext4/mmp.c) for a read-write mount of an image with
 * INCOMPAT_MMP, which several hosts may reach (a shared disk, a network file).
 *
 * <p>{@link #protect} is ext4_multi_mount_protect(): the MMP block is read; CLEAN goes on at once,
 * FSCK (e2fsck runs) refuses, any other sequence is watched for {@code min(2c + 1, c + 60)} seconds
 * (c the check interval: s_mmp_update_interval or the block's own, at least 5) and a change refuses
 * the mount: another node holds the filesystem. Then a random sequence of ours goes in with this
 * host's name and the image's name, and after the same wait (none for a CLEAN block, as the kernel
 * does) it must still be there.
 *
 * <p>{@link #start} is kmmpd: every s_mmp_update_interval seconds the block is read back and must
 * still hold what we wrote (our sequence and node name), then the next sequence is written with the
 * time and a check interval of twice the time the round took (5..300 s). A foreign sequence or a
 * failed read is fatal for the mount ({@link Reporter#fatal}); a failed write is reported and the
 * rounds go on. The kernel reads the block back only when a round came late; ext4j reads it every
 * round, which costs one block read per interval and finds a second holder sooner.
 *
 * <p>{@link #pause} and {@link #resume} (freeze, thaw) stop and restart the rounds, as a frozen
 * filesystem holds kmmpd's writes back; {@link #stop} (unmount) ends them and writes CLEAN, unless
 * the protection failed, when the block is left to whoever holds it now. A read-only mount never
 * gets here: it neither reads nor writes the block.
 *
 * <p>Time comes from a {@link Clock}, so that tests need not wait.
 */
final class Mmp {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /** s_mmp_update_interval 0 means this (EXT4_MMP_UPDATE_INTERVAL), as mke2fs writes it. */
    static final int DEFAULT_UPDATE_INTERVAL = 5;
    /** EXT4_MMP_MIN_CHECK_INTERVAL and EXT4_MMP_MAX_CHECK_INTERVAL, seconds. */
    static final int MIN_CHECK_INTERVAL = 5;
    static final int MAX_CHECK_INTERVAL = 300;
    /** EXT4_MMP_CHECK_MULT: the check interval is this many update rounds. */
    static final int CHECK_MULT = 2;
    /** Write failures reported: the first and then one in this many, as kmmpd. */
    private static final int WRITE_ERROR_EVERY = 60;

    /** Monotonic milliseconds, wall-clock seconds and sleeping. */
    interface Clock {
        long millis();

        long epochSeconds();

        void sleep(long millis) throws InterruptedException;

        Clock SYSTEM = new Clock() {
            @Override
            public long millis() {
                return System.nanoTime() / 1_000_000;
            }

            @Override
            public long epochSeconds() {
                return Instant.now().getEpochSecond();
            }

            @Override
            public void sleep(long millis) throws InterruptedException {
                Thread.sleep(millis);
            }
        };
    }

    /** Where the rounds' failures go (the error policy). Called with no lock of ours held. */
    interface Reporter {
        /** The protection failed (another holder, or the block unreadable): no more rounds. */
        void fatal(Ext4Exception e);

        /** A write of the block failed; the rounds go on. */
        void error(Ext4Exception e);
    }

    private final BlockDevice device;
    private final long mmpBlock;
    private final int blockSize;
    /** With metadata_csum the block carries a checksum from this seed. */
    private final boolean csum;
    private final int csumSeed;
    private final int updateSeconds;
    private final Clock clock;
    /** Guards the fields below; held for a whole round, never while reporting. */
    private final Object lock = new Object();
    /** What we last wrote: our sequence, names and check interval. */
    private final MmpBlock mine;
    private long lastRoundMillis;
    private int failedWrites;
    private boolean paused;
    private boolean failed;
    /** Set with {@link #failed}, read without the lock by every write of the filesystem ({@link #fence}). */
    private volatile boolean fenced;
    private boolean stopped;
    private ScheduledExecutorService timer;
    private Reporter reporter;

    private Mmp(BlockDevice device, Superblock sb, MmpBlock mine, Clock clock) {
        this.device = device;
        this.mmpBlock = sb.mmpBlock();
        this.blockSize = sb.blockSize();
        this.csum = sb.has(Feature.METADATA_CSUM);
        this.csumSeed = csum ? sb.checksumSeed() : 0;
        this.updateSeconds = updateInterval(sb);
        this.mine = mine;
        this.clock = clock;
        this.lastRoundMillis = clock.millis();
    }

    /** s_mmp_update_interval in seconds, 0 read as the default. */
    static int updateInterval(Superblock sb) {
        int i = sb.mmpUpdateInterval();
        return i == 0 ? DEFAULT_UPDATE_INTERVAL : i;
    }

    /** The check interval c of the mount check: s_mmp_update_interval, at least 5, or the block's when longer. */
    private static int checkInterval(Superblock sb, MmpBlock found) {
        return Math.max(Math.max(sb.mmpUpdateInterval(), MIN_CHECK_INTERVAL), found.checkInterval());
    }

    /** Seconds the mount check watches a held block for a change: min(2c + 1, c + 60). */
    static int waitSeconds(int checkInterval) {
        return Math.min(checkInterval * 2 + 1, checkInterval + 60);
    }

    /**
     * ext4_multi_mount_protect(): makes sure no other node holds the filesystem, then takes it for
     * this one. EBUSY when e2fsck runs or another node holds it (the message names the node and
     * device the block records); EUCLEAN or EBADMSG for a bad MMP block; EIO for failed I/O.
     *
     * @param deviceName what the block records as this holder's device (the image path)
     * @param nodeName   this host's name
     */
    static Mmp protect(BlockDevice device, Superblock sb, String deviceName, String nodeName, Clock clock) throws Ext4Exception {
        long block = sb.mmpBlock();
        if (block < sb.firstDataBlock() || block >= sb.blocksCount()) {
            throw Ext4Exception.corrupted("superblock: MMP block " + block + " lies outside the filesystem (" + sb.firstDataBlock()
                    + ".." + (sb.blocksCount() - 1) + "); run e2fsck");
        }
        Mmp reader = new Mmp(device, sb, null, clock); // reads and writes the block; not ours yet
        MmpBlock found = reader.read();
        int check = checkInterval(sb, found);
        int seq = found.seq();
        int wait = 0;
        if (seq == MmpBlock.SEQ_FSCK) {
            throw new Ext4Exception(Errno.EBUSY, "MMP: e2fsck is running on the filesystem (" + describe(found) + ")");
        }
        if (seq != MmpBlock.SEQ_CLEAN) {
            wait = waitSeconds(check);
            LOG.log(Level.INFO, "MMP: the filesystem was not released (" + describe(found) + "); watching the MMP block for " + wait
                    + " s to see whether that node still holds it");
            reader.sleep(wait);
            found = reader.read();
            if (found.seq() != seq) {
                throw inUse(found);
            }
        }
        found.setSeq(randomSeq());
        found.setNodeName(nodeName);
        found.setDeviceName(deviceName);
        found.setTime(clock.epochSeconds());
        found.setCheckInterval(Math.max(CHECK_MULT * updateInterval(sb), MIN_CHECK_INTERVAL));
        reader.write(found);
        reader.sleep(wait);
        MmpBlock after = reader.read();
        if (after.seq() != found.seq()) {
            throw inUse(after);
        }
        return new Mmp(device, sb, found, clock);
    }

    /**
     * The longest {@link #protect} may wait on this image: two watches of the block (0 without mmp,
     * or when the block cannot be read: the mount will say why).
     */
    static int longestWaitSeconds(BlockDevice device, Superblock sb) {
        if (!sb.has(Feature.MMP)) {
            return 0;
        }
        try {
            MmpBlock b = new Mmp(device, sb, null, Clock.SYSTEM).read();
            return 2 * waitSeconds(checkInterval(sb, b));
        } catch (Ext4Exception e) {
            return 0;
        }
    }

    /** A random sequence in 0..EXT4_MMP_SEQ_MAX, as mmp_new_seq(). */
    private static int randomSeq() {
        return (int) ThreadLocalRandom.current().nextLong(Integer.toUnsignedLong(MmpBlock.SEQ_MAX) + 1);
    }

    private static Ext4Exception inUse(MmpBlock b) {
        return new Ext4Exception(Errno.EBUSY, "MMP: the filesystem is in use on node \"" + b.nodeName() + "\", device \""
                + b.deviceName() + "\" (it changed the MMP block while we watched, last at "
                + Instant.ofEpochSecond(b.time()) + "); it can be mounted read-only, or read-write once that node lets go");
    }

    private static String describe(MmpBlock b) {
        return "last updated by node \"" + b.nodeName() + "\", device \"" + b.deviceName() + "\" at " + Instant.ofEpochSecond(b.time());
    }

    /** This host's name as the kernel's utsname has it, for the block's mmp_nodename. */
    static String hostName() {
        try {
            String h = Files.readString(Path.of("/proc/sys/kernel/hostname"), StandardCharsets.UTF_8).strip();
            if (!h.isEmpty()) {
                return h;
            }
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.DEBUG, "reading the host name: {0}", e.toString());
        }
        String env = System.getenv("HOSTNAME");
        return env != null && !env.isEmpty() ? env : "unknown host";
    }

    /** Starts the rounds (kmmpd) on a daemon thread, every s_mmp_update_interval seconds. */
    void start(Reporter reporter) {
        synchronized (lock) {
            this.reporter = reporter;
            timer = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "ext4j-kmmpd");
                t.setDaemon(true);
                return t;
            });
            timer.scheduleAtFixedRate(this::tick, updateSeconds, updateSeconds, TimeUnit.SECONDS);
        }
    }

    /** One round, its failure reported. */
    void tick() {
        try {
            round();
        } catch (Ext4Exception e) {
            boolean fatal;
            Reporter reporter;
            synchronized (lock) {
                fatal = failed;
                reporter = this.reporter;
                if (fatal && timer != null) {
                    timer.shutdown();
                }
            }
            if (fatal) {
                reporter.fatal(e);
            } else {
                reporter.error(e);
            }
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, "MMP: an update round failed unexpectedly", e);
        }
    }

    /**
     * One round of kmmpd: the block must still be ours; then the next sequence goes in. Throws for a
     * fatal failure (then {@link #failed()} is true and no more rounds write) or a failed write.
     * Nothing happens while paused, stopped or failed.
     */
    void round() throws Ext4Exception {
        synchronized (lock) {
            long now = clock.millis();
            long since = now - lastRoundMillis;
            lastRoundMillis = now;
            if (paused || stopped || failed) {
                return;
            }
            MmpBlock onDisk;
            try {
                onDisk = read();
            } catch (Ext4Exception e) {
                fail();
                throw new Ext4Exception(e.errno(), "MMP: the MMP block cannot be read back (" + e.getMessage()
                        + "); ext4j can no longer tell whether another node uses the filesystem", e);
            }
            if (onDisk.seq() != mine.seq() || !onDisk.sameNode(mine)) {
                fail();
                throw new Ext4Exception(Errno.EBUSY, "MMP: the filesystem seems to be mounted on another node as well: the MMP"
                        + " block was changed by node \"" + onDisk.nodeName() + "\", device \"" + onDisk.deviceName() + "\" at "
                        + Instant.ofEpochSecond(onDisk.time()) + "; ext4j stops updating it");
            }
            int next = mine.seq() + 1;
            mine.setSeq(Integer.compareUnsigned(next, MmpBlock.SEQ_MAX) > 0 || next == 0 ? 1 : next);
            mine.setTime(clock.epochSeconds());
            long interval = CHECK_MULT * since / 1000;
            mine.setCheckInterval((int) Math.max(MIN_CHECK_INTERVAL, Math.min(interval, MAX_CHECK_INTERVAL)));
            try {
                write(mine);
            } catch (Ext4Exception e) {
                if (failedWrites++ % WRITE_ERROR_EVERY == 0) {
                    throw e;
                }
                LOG.log(Level.DEBUG, "MMP: {0}", e.getMessage());
            }
        }
    }

    private void fail() {
        failed = true;
        fenced = true;
    }

    /**
     * The device the filesystem writes through: once the protection failed it refuses every write
     * and growth, so that nothing more of ours reaches an image another node may be writing (the
     * kernel gets there by aborting the journal). Reads go on.
     */
    BlockDevice fence(BlockDevice inner) {
        return new ForwardingDevice(inner) {
            @Override
            public void write(long offset, ByteBuffer src) throws IOException {
                refuseIfFenced();
                inner.write(offset, src);
            }

            @Override
            public void grow(long newSize) throws IOException {
                refuseIfFenced();
                inner.grow(newSize);
            }
        };
    }

    private void refuseIfFenced() throws IOException {
        if (fenced) {
            throw new IOException("MMP: the image is no longer ours (another node may hold it); nothing more is written to it");
        }
    }

    /** Freeze: no rounds until {@link #resume}. */
    void pause() {
        synchronized (lock) {
            paused = true;
        }
    }

    /** Thaw: the rounds go on; the first one checks that nobody took the block meanwhile. */
    void resume() {
        synchronized (lock) {
            paused = false;
        }
    }

    /** Whether the protection failed: another holder, or the block unreadable. */
    boolean failed() {
        synchronized (lock) {
            return failed;
        }
    }

    /** The sequence we last wrote. */
    int seq() {
        synchronized (lock) {
            return mine.seq();
        }
    }

    /**
     * Unmount (ext4_stop_mmpd()): the rounds end and, unless the protection failed, the block says
     * CLEAN. Idempotent.
     */
    void stop() throws Ext4Exception {
        ScheduledExecutorService t;
        synchronized (lock) {
            if (stopped) {
                return;
            }
            stopped = true;
            t = timer;
        }
        if (t != null) {
            t.shutdown(); // a round under way finishes (an interrupt would close the image's channel)
            try {
                t.awaitTermination(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (lock) {
            if (failed) {
                LOG.log(Level.WARNING, "MMP: the MMP block is left as it is: another node may hold the filesystem");
                return;
            }
            mine.setSeq(MmpBlock.SEQ_CLEAN);
            mine.setTime(clock.epochSeconds());
            write(mine);
        }
    }

    private MmpBlock read() throws Ext4Exception {
        ByteBuffer raw = ByteBuffer.allocate(blockSize);
        try {
            device.read(mmpBlock * blockSize, raw);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "reading MMP block " + mmpBlock + " failed: " + e.getMessage(), e);
        }
        MmpBlock b = MmpBlock.of(raw.flip());
        if (b.magic() != MmpBlock.MAGIC) {
            throw Ext4Exception.corrupted(String.format("MMP block %d: magic 0x%08x (expected 0x%08x); run e2fsck", mmpBlock,
                    b.magic(), MmpBlock.MAGIC));
        }
        if (csum && b.storedChecksum() != b.computeChecksum(csumSeed)) {
            throw Ext4Exception.badChecksum("MMP block " + mmpBlock, b.storedChecksum() & 0xFFFFFFFFL,
                    b.computeChecksum(csumSeed) & 0xFFFFFFFFL);
        }
        return b;
    }

    /** Writes the block home and makes it durable (the kernel submits it REQ_SYNC and waits). */
    private void write(MmpBlock b) throws Ext4Exception {
        if (csum) {
            b.updateChecksum(csumSeed);
        }
        try {
            device.write(mmpBlock * blockSize, b.raw());
            device.sync();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "writing MMP block " + mmpBlock + " failed: " + e.getMessage(), e);
        }
    }

    private void sleep(int seconds) throws Ext4Exception {
        if (seconds == 0) {
            return;
        }
        try {
            clock.sleep(seconds * 1000L);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Ext4Exception(Errno.EINTR, "MMP: the mount was interrupted while waiting on the MMP block", e);
        }
    }
}
