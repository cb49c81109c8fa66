package dev.ext4j.it;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** The control file at a mount's root ({@code .ext4j-control}), used from a shell as a user would. */
final class Control {
    static final String NAME = ".ext4j-control";

    private Control() {
    }

    /** {@code echo CMD > CTL} in a shell, run in the mount: fails (with the errno's text on stderr) when the command does. */
    static Tools.Result send(Path mnt, String cmd) {
        return Tools.bash(Tools.SHORT, "cd \"$1\" && echo \"$2\" > " + NAME, mnt.toString(), cmd);
    }

    /** Writes {@code cmd} and reads the reply on one open file, as {@code exec 3<>CTL}. */
    static String reply(Path mnt, String cmd) {
        return Tools.bash(Tools.SHORT, "cd \"$1\" && exec 3<>" + NAME + " && { echo \"$2\" >&3; cat <&3; }", mnt.toString(), cmd).stdout();
    }

    /** The {@code status} reply as "key" → "value" (e.g. "size" → "67108864"). */
    static Map<String, String> status(Path mnt) {
        String text = reply(mnt, "status");
        if (!text.startsWith("ok status\n")) {
            throw new AssertionError("status: " + text);
        }
        Map<String, String> out = new LinkedHashMap<>();
        text.lines().skip(1).forEach(l -> {
            int colon = l.indexOf(':');
            if (colon > 0) {
                out.put(l.substring(0, colon).strip(), l.substring(colon + 1).strip());
            }
        });
        return out;
    }
}
