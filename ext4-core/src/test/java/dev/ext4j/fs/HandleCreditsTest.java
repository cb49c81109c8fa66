package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.journal.Transactions;
import dev.ext4j.testutil.Images;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * With {@code ext4j.creditcheck} (on in the unit tests) a journal handle that dirties more blocks
 * than its credits fails at once, as jbd2_journal_dirty_metadata() warns of a handle out of credits.
 */
class HandleCreditsTest {
    @TempDir
    Path work;

    @Test
    void aHandleThatDirtiesMoreBlocksThanItsCreditsFails() throws Exception {
        assumeTrue(Boolean.getBoolean("ext4j.creditcheck"), "the check is on only with -Dext4j.creditcheck=true (the pom sets it)");
        Path img = Images.mkfs(work.resolve("c.img"), "16M", List.of("-b", "1024", "-J", "size=1"), null);
        Matcher m = Pattern.compile("Inode table at (\\d+)-").matcher(Images.dumpe2fs(img));
        assertTrue(m.find());
        long table = Long.parseLong(m.group(1));
        try (Ext4FileSystem mounted = Ext4FileSystem.open(img, MountOptions.defaults())) {
            SuperInfo fs = mounted.sbi();
            // unchanged contents, but each update dirties the block in the running transaction
            try (Transactions.Handle outer = fs.startHandle(3)) {
                fs.cache().update(table, b -> { });
                fs.cache().update(table, b -> { }); // already in the transaction: costs nothing
                try (Transactions.Handle inner = fs.startHandle(100)) { // nested: shares the outer's 3
                    fs.cache().update(table + 1, b -> { });
                }
                fs.cache().update(table + 2, b -> { });
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> fs.cache().update(table + 3, b -> { }));
                assertTrue(e.getMessage().contains("3 credits") && e.getMessage().contains("block " + (table + 3)), e.getMessage());
            }
            // a handle that asks for more room first (Transactions.needsRestart extends it) does not fail
            try (Transactions.Handle h = fs.startHandle(1)) {
                fs.cache().update(table + 4, b -> { });
                assertTrue(!fs.transactions().needsRestart(3));
                for (int i = 5; i < 8; i++) {
                    long blk = table + i;
                    fs.cache().update(blk, b -> { });
                }
            }
        }
        Images.assertClean(img);
    }
}
